#!/usr/bin/env python3
"""Upstream git server for airlock's tests and demo: `git http-backend` behind HTTPS on 127.0.0.1.

It stands in for GitHub: it accepts only the REAL upstream token
(`Authorization: Basic base64("x-access-token:" + TOKEN)`), sets REMOTE_USER so pushes
are allowed, and answers anything else with 401. That proves the gateway swapped the
sandbox's session token for the real credential.

Request bodies are streamed to `git http-backend` (chunked bodies de-chunked on the fly),
responses are streamed back chunked. Fault knobs, set on the command line or per request
through a JSON knob file (re-read on every request), let tests break things on purpose:

  capture      file to append one JSON line of request headers per request
  truncate     close the connection (no final chunk) after N response body bytes
  delay        sleep N seconds before answering
  status       answer every request with this status and a short text body
  redirect     answer every request with 301 to this Location
  gzip_refs    gzip the info/refs advertisement (Content-Encoding: gzip)
  only         apply status/truncate/delay only to requests whose path (without the query)
               ends with this, such as "/git-upload-pack"
  protocol_v0  ignore Git-Protocol: answer in protocol v0, as a server without v2 does
  git_config   {"key": "value"} configuration for the served git (GIT_CONFIG_COUNT), such
               as {"uploadpack.allowFilter": "false"}

With --lfs-root, --lfs-storage and --lfs-secret-file, `…/info/lfs/…` is the Git LFS API
of `lfs_server.py` (beside this file), behind the same token check.

Usage:
  git-server.py --root DIR --cert CERT --key KEY --token-file FILE [--port 0] [--port-file F]
                [--base /prefix] [--knobs FILE] [--capture FILE] [--truncate N] [--delay S]
                [--status N] [--redirect URL] [--gzip-refs]
                [--lfs-root DIR --lfs-storage URL --lfs-secret-file FILE]

Binds 127.0.0.1 only. Prints `listening on 127.0.0.1:PORT` on stdout when ready.
"""
import argparse
import base64
import gzip
import hmac
import itertools
import json
import os
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

ARGS = None
REAL_TOKEN = None
MAX_HEADER_LINE = 65536


def knobs():
    k = {
        "capture": ARGS.capture,
        "truncate": ARGS.truncate,
        "delay": ARGS.delay,
        "status": ARGS.status,
        "redirect": ARGS.redirect,
        "gzip_refs": ARGS.gzip_refs,
        "only": None,
        "protocol_v0": False,
        "git_config": {},
    }
    if ARGS.knobs and os.path.exists(ARGS.knobs):
        with open(ARGS.knobs) as f:
            text = f.read().strip()
        if text:
            k.update(json.loads(text))
    return k


def expected_authorization():
    raw = ("x-access-token:" + REAL_TOKEN).encode()
    return "Basic " + base64.b64encode(raw).decode()


class ChunkedReader:
    """Reads a chunked request body, yielding data pieces, bounded per chunk read."""

    def __init__(self, rfile):
        self.rfile = rfile

    def __iter__(self):
        while True:
            line = self.rfile.readline(MAX_HEADER_LINE)
            if not line:
                raise IOError("client closed inside a chunked body")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                # trailers until an empty line
                while True:
                    t = self.rfile.readline(MAX_HEADER_LINE)
                    if t in (b"\r\n", b"\n", b""):
                        return
            remaining = size
            while remaining > 0:
                piece = self.rfile.read(min(remaining, 65536))
                if not piece:
                    raise IOError("client closed inside a chunk")
                remaining -= len(piece)
                yield piece
            self.rfile.readline(MAX_HEADER_LINE)  # CRLF after the chunk


CONNECTIONS = itertools.count(1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as production servers set on kept-alive connections (nginx's
    # tcp_nodelay): without it the last small write of each response (the final chunk)
    # waits for the client's delayed ACK, about 40 ms per request on a kept connection.
    disable_nagle_algorithm = True
    server_version = "airlock-test-git/1"

    def log_message(self, fmt, *args):
        sys.stderr.write("git-server: %s\n" % (fmt % args))

    def setup(self):
        super().setup()
        # Which TCP connection a request came on (captured): kept-alive connections are
        # counted by the tests.
        self.connection_number = next(CONNECTIONS)

    def do_GET(self):
        self.handle_git()

    def do_POST(self):
        self.handle_git()

    def send_text(self, status, text, extra=None):
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def discard_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            for _ in ChunkedReader(self.rfile):
                pass
        else:
            n = int(self.headers.get("Content-Length") or 0)
            while n > 0:
                piece = self.rfile.read(min(n, 65536))
                if not piece:
                    break
                n -= len(piece)

    def handle_git(self):
        k = knobs()
        if k.get("only") and not self.path.partition("?")[0].endswith(k["only"]):
            for name in ("truncate", "delay", "status"):
                k[name] = None
        if k.get("capture"):
            record = {
                "method": self.command,
                "path": self.path,
                "headers": [[name, value] for name, value in self.headers.items()],
                "connection": self.connection_number,
            }
            with open(k["capture"], "a") as f:
                f.write(json.dumps(record) + "\n")
        if k.get("delay"):
            time.sleep(float(k["delay"]))

        auth = self.headers.get_all("Authorization") or []
        if len(auth) != 1 or not hmac.compare_digest(auth[0].encode(), expected_authorization().encode()):
            self.discard_body()
            self.send_text(401, "bad credentials", {"WWW-Authenticate": 'Basic realm="GitHub"'})
            return
        if k.get("status"):
            self.discard_body()
            self.send_text(int(k["status"]), "forced status %s" % k["status"])
            return
        if k.get("redirect"):
            self.discard_body()
            self.send_text(301, "moved", {"Location": k["redirect"]})
            return

        path, _, query = self.path.partition("?")
        if ARGS.base:
            if not path.startswith(ARGS.base + "/"):
                self.discard_body()
                self.send_text(404, "not under " + ARGS.base)
                return
            path = path[len(ARGS.base):]

        if ARGS.lfs_root and "/info/lfs/" in path:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import lfs_server
            with open(ARGS.lfs_secret_file) as f:
                secret = f.read().strip()
            lfs_server.handle_api(self, path, k, ChunkedReader, ARGS.lfs_root, ARGS.lfs_storage, secret)
            return

        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": ARGS.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "HOME": ARGS.root,
        }
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        length = self.headers.get("Content-Length")
        if not chunked and length is not None:
            env["CONTENT_LENGTH"] = length
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol") and not k.get("protocol_v0"):
            env["HTTP_GIT_PROTOCOL"] = self.headers["Git-Protocol"]
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        config = sorted((k.get("git_config") or {}).items())
        if config:
            env["GIT_CONFIG_COUNT"] = str(len(config))
            for i, (key, value) in enumerate(config):
                env["GIT_CONFIG_KEY_%d" % i] = key
                env["GIT_CONFIG_VALUE_%d" % i] = str(value)

        backend = os.path.join(subprocess.check_output(["git", "--exec-path"]).decode().strip(), "git-http-backend")
        proc = subprocess.Popen([backend], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

        def feed():
            try:
                if chunked:
                    for piece in ChunkedReader(self.rfile):
                        proc.stdin.write(piece)
                elif length is not None:
                    n = int(length)
                    while n > 0:
                        piece = self.rfile.read(min(n, 65536))
                        if not piece:
                            break
                        proc.stdin.write(piece)
                        n -= len(piece)
                    if n > 0:
                        # The client left before its Content-Length (the gateway refusing a
                        # push cuts its pack short). git http-backend (2.39) spins forever on
                        # an early end of a fixed-length body, so it is stopped here.
                        proc.kill()
            except (BrokenPipeError, IOError):
                pass
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()

        # CGI header block
        status = 200
        headers = []
        while True:
            line = proc.stdout.readline(MAX_HEADER_LINE)
            if not line or line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
            value = value.strip()
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value))

        gzip_body = k.get("gzip_refs") and path.endswith("/info/refs")
        self.send_response(status)
        for name, value in headers:
            if name.lower() in ("content-length", "transfer-encoding"):
                continue
            self.send_header(name, value)
        if gzip_body:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        truncate = k.get("truncate")
        sent = 0

        def send_chunk(data):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        if gzip_body:
            data = gzip.compress(proc.stdout.read())
            send_chunk(data)
        else:
            while True:
                piece = proc.stdout.read1(65536) if hasattr(proc.stdout, "read1") else proc.stdout.read(65536)
                if not piece:
                    break
                if truncate is not None and sent + len(piece) >= int(truncate):
                    piece = piece[: max(0, int(truncate) - sent)]
                    if piece:
                        send_chunk(piece)
                    self.wfile.flush()
                    proc.kill()
                    self.log_message("truncated response after %s bytes", truncate)
                    self.close_connection = True
                    # Abort: no final chunk, close the socket under the client.
                    self.connection.shutdown(2)
                    return
                send_chunk(piece)
                sent += len(piece)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        writer.join(timeout=60)
        proc.wait()


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    global ARGS, REAL_TOKEN
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="directory holding OWNER/REPO.git bare repositories")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--token-file", required=True, help="file holding the real upstream token")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--base", default="", help="URL path prefix the repositories live under")
    p.add_argument("--knobs", help="JSON knob file, re-read per request")
    p.add_argument("--capture")
    p.add_argument("--truncate", type=int)
    p.add_argument("--delay", type=float)
    p.add_argument("--status", type=int)
    p.add_argument("--redirect")
    p.add_argument("--gzip-refs", action="store_true")
    p.add_argument("--lfs-root", help="Git LFS objects (DIR/objects/OID); serves the LFS API")
    p.add_argument("--lfs-storage", help="the LFS storage host's base URL, named in actions")
    p.add_argument("--lfs-secret-file", help="secret shared with the storage host for action headers")
    ARGS = p.parse_args()
    ARGS.root = os.path.abspath(ARGS.root)
    ARGS.base = ARGS.base.rstrip("/")
    with open(ARGS.token_file) as f:
        REAL_TOKEN = f.read().strip()
    if not REAL_TOKEN:
        sys.exit("git-server: empty token file")

    server = Server(("127.0.0.1", ARGS.port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(ARGS.cert, ARGS.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    if ARGS.port_file:
        with open(ARGS.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.rename(ARGS.port_file + ".tmp", ARGS.port_file)
    print("listening on 127.0.0.1:%d" % port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
