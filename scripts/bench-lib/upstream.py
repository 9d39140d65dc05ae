#!/usr/bin/env python3
"""The upstream every benchmark peer talks to: one process, listeners in several network namespaces.

    upstream.py --listen [NETNS@]ADDR:PORT/http|https ... [--cert F --key F] [--git-root DIR]
                [--git-auth 'Basic …'] [--max-seconds N]

Listening sockets are created inside each given namespace (setns on the main thread before
any other thread exists, then back), so airlock's gateway (which dials from the harness'
namespace), the peers (which run inside their gateway-side namespace) and the direct baseline
(a client in a sandbox-side namespace dialing the veth address) all reach the same server code.

Routes, HTTP/1.1 with keep-alive:
    GET /bytes/N      N zero bytes (sendfile on plain listeners)
    GET /small        a 1 KiB body
    /OWNER/REPO[.git]/info/refs, git-upload-pack, git-receive-pack
                      git http-backend over GIT_ROOT (streamed both ways, chunked replies)
Prints "ready" once every listener is bound. Exits by itself after --max-seconds.
"""
import argparse
import ctypes
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

CLONE_NEWNET = 0x40000000
CHUNK = 1 << 20
SMALL_BODY = b"x" * 1024
GIT_PATH = re.compile(r"^/([A-Za-z0-9._-]+)/([A-Za-z0-9._-]+?)(\.git)?/(info/refs|git-upload-pack|git-receive-pack)$")


def bind_in(netns, addr, port):
    """Creates a listening TCP socket inside the network namespace at path `netns` (or here)."""
    libc = ctypes.CDLL(None, use_errno=True)
    here = None
    if netns:
        here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(netns, os.O_RDONLY)
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
        os.close(target)
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr, port))
        sock.listen(4096)
        return sock
    finally:
        if here is not None:
            if libc.setns(here, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
            os.close(here)


class Connection:
    """One client connection: reads requests, answers them, until close."""

    def __init__(self, sock, plain, server):
        self.sock = sock
        self.plain = plain
        self.server = server
        self.buf = b""

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
            if len(self.buf) > 65536:
                return None
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return method, target, version, headers

    def body_reader(self, headers):
        """Yields the request body in pieces (Content-Length or chunked)."""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                while b"\r\n" not in self.buf:
                    self.buf += self.sock.recv(65536)
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    data = self.sock.recv(65536)
                    if not data:
                        return
                    self.buf += data
                chunk, self.buf = self.buf[:size], self.buf[size + 2:]
                if size == 0:
                    return
                yield chunk
        else:
            left = int(headers.get("content-length", "0"))
            if self.buf:
                piece, self.buf = self.buf[:left], self.buf[left:]
                left -= len(piece)
                yield piece
            while left > 0:
                data = self.sock.recv(min(left, 65536))
                if not data:
                    return
                left -= len(data)
                yield data

    def serve(self):
        try:
            while True:
                request = self.read_head()
                if request is None:
                    return
                method, target, _version, headers = request
                keep = headers.get("connection", "").lower() != "close"
                path, _, query = target.partition("?")
                if method == "GET" and path.startswith("/bytes/"):
                    self.send_bytes(int(path[7:]), keep)
                elif method == "GET" and path == "/small":
                    self.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                                      % (len(SMALL_BODY), SMALL_BODY))
                elif self.server.git_root and GIT_PATH.match(path):
                    self.git(method, path, query, headers)
                else:
                    self.sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                if not keep:
                    return
        except (OSError, ValueError, ssl.SSLError):
            return
        finally:
            try:
                self.sock.close()
            except OSError:
                pass

    def send_bytes(self, n, keep):
        self.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n%s\r\n"
                          % (n, b"" if keep else b"Connection: close\r\n"))
        if self.plain:
            fd = self.server.zero_fd
            while n > 0:
                sent = os.sendfile(self.sock.fileno(), fd, 0, min(n, self.server.zero_size))
                if sent <= 0:
                    raise OSError("short sendfile")
                n -= sent
        else:
            view = memoryview(self.server.zeros)
            while n > 0:
                piece = min(n, len(view))
                self.sock.sendall(view[:piece])
                n -= piece

    def git(self, method, path, query, headers):
        if self.server.git_auth and headers.get("authorization") != self.server.git_auth:
            self.sock.sendall(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"bench\"\r\n"
                              b"Content-Length: 0\r\n\r\n")
            return
        m = GIT_PATH.match(path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": self.server.git_root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{m.group(1)}/{m.group(2)}.git/{m.group(4)}",
            "QUERY_STRING": query,
            "REQUEST_METHOD": method,
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": "bench",
            "CONTENT_TYPE": headers.get("content-type", ""),
        }
        for name in ("git-protocol", "content-encoding"):
            if name in headers:
                env["HTTP_" + name.upper().replace("-", "_")] = headers[name]
        if "content-length" in headers:
            env["CONTENT_LENGTH"] = headers["content-length"]
        proc = subprocess.Popen(["git", "http-backend"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        reader = self.body_reader(headers) if method == "POST" else iter(())

        def feed():
            try:
                for piece in reader:
                    proc.stdin.write(piece)
            except OSError:
                pass
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        feeder.join()  # requests are small next to replies; reading first keeps the socket single-user
        out = proc.stdout
        status = b"200 OK"
        reply_headers = []
        while True:
            line = out.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "status":
                status = value.strip().encode()
            else:
                reply_headers.append(f"{name}: {value.strip()}\r\n".encode())
        self.sock.sendall(b"HTTP/1.1 " + status + b"\r\n" + b"".join(reply_headers) +
                          b"Transfer-Encoding: chunked\r\n\r\n")
        while True:
            data = out.read1(CHUNK)
            if not data:
                break
            self.sock.sendall(b"%x\r\n" % len(data) + data + b"\r\n")
        self.sock.sendall(b"0\r\n\r\n")
        proc.wait()


class Server:
    def __init__(self, args):
        self.git_root = args.git_root
        self.git_auth = args.git_auth
        self.zeros = bytes(CHUNK)
        self.zero_size = 16 * CHUNK
        with tempfile.TemporaryFile() as f:
            f.write(bytes(self.zero_size))
            f.flush()
            self.zero_fd = os.dup(f.fileno())
        self.tls = None
        if args.cert:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(args.cert, args.key)

    def accept_loop(self, sock, tls):
        while True:
            try:
                client, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(client, tls), daemon=True).start()

    def handle(self, client, tls):
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            try:
                client.settimeout(10)
                client = self.tls.wrap_socket(client, server_side=True)
                client.settimeout(None)
            except (OSError, ssl.SSLError):
                client.close()
                return
        Connection(client, not tls, self).serve()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", action="append", default=[])
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--git-root")
    parser.add_argument("--git-auth")
    parser.add_argument("--max-seconds", type=float, default=3600)
    args = parser.parse_args()
    server = Server(args)
    listeners = []
    for spec in args.listen:
        netns, _, rest = spec.rpartition("@")
        hostport, _, kind = rest.partition("/")
        addr, _, port = hostport.rpartition(":")
        if kind not in ("http", "https"):
            sys.exit(f"upstream: bad listener kind in {spec!r}")
        listeners.append((bind_in(netns or None, addr, int(port)), kind == "https"))
    threading.stack_size(512 * 1024)
    for sock, tls in listeners:
        threading.Thread(target=server.accept_loop, args=(sock, tls), daemon=True).start()
    print("ready", flush=True)
    time.sleep(args.max_seconds)


if __name__ == "__main__":
    main()
