#!/usr/bin/env python3
"""Git LFS stand-in for airlock's tests: the batch and locking API, and a storage host.

Two roles, like GitHub's LFS:

* The API (`POST …/info/lfs/objects/batch`, `…/info/lfs/locks…`), served by
  `git-server.py --lfs-root DIR --lfs-storage URL --lfs-secret-file FILE` on the git host
  itself, behind its check of the real token. Each action's href points at the storage
  host (URL), and carries a `header` with a per-object credential
  (`Authorization: RemoteAuth <hmac(secret, "op:oid")>`), as short-lived storage
  credentials do. Objects live in DIR/objects/OID.
* The storage host (this file run as a program): basic transfer over HTTPS on its own
  port and name. GET /objects/OID downloads, PUT /objects/OID uploads (streamed to disk,
  SHA-256 and size checked), POST /verify checks an upload. Every request without the
  action's exact header is refused with 403 `storage: missing or wrong action header`.

Knobs (the git server's knob file): `lfs_transfer` makes the batch answer name that
transfer adapter instead of `basic`.

Usage (storage host):
  lfs_server.py --root DIR --cert CERT --key KEY --secret-file FILE [--port 0] [--capture FILE]
Binds 127.0.0.1 only. Prints `listening on 127.0.0.1:PORT` when ready.
"""
import argparse
import hashlib
import hmac
import json
import os
import re
import socketserver
import ssl
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

OID = re.compile(r"^[0-9a-f]{64}$")
MAX_JSON = 1 << 20
LOCKS = {}
LOCKS_MUTEX = threading.Lock()


def sign(secret, op, oid):
    return "RemoteAuth " + hmac.new(secret.encode(), ("%s:%s" % (op, oid)).encode(), hashlib.sha256).hexdigest()


def read_body(handler, reader_class):
    """The whole request body (bounded), de-chunked."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        data = b"".join(reader_class(handler.rfile))
    else:
        data = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    if len(data) > MAX_JSON:
        raise ValueError("body too large")
    return data


def send_json(handler, status, obj):
    body = json.dumps(obj).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/vnd.git-lfs+json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def handle_api(handler, path, knobs, reader_class, root, storage, secret):
    """Serves one LFS API request on the git host (the real token was checked)."""
    rest = path.split("/info/lfs/", 1)[1]
    try:
        request = json.loads(read_body(handler, reader_class) or b"{}") if handler.command == "POST" else {}
    except ValueError:
        send_json(handler, 400, {"message": "stand-in: malformed JSON"})
        return
    if rest == "objects/batch":
        op = request.get("operation")
        if op not in ("download", "upload"):
            send_json(handler, 422, {"message": "stand-in: unknown operation"})
            return
        objects = []
        for item in request.get("objects", []):
            oid, size = item.get("oid", ""), item.get("size", 0)
            if not OID.match(oid):
                objects.append({"oid": oid, "size": size, "error": {"code": 422, "message": "invalid oid"}})
                continue
            exists = os.path.exists(os.path.join(root, "objects", oid))
            entry = {"oid": oid, "size": size}
            if op == "download":
                if not exists:
                    entry["error"] = {"code": 404, "message": "Object does not exist"}
                else:
                    entry["actions"] = {"download": {"href": "%s/objects/%s" % (storage, oid),
                                                     "header": {"Authorization": sign(secret, "download", oid)},
                                                     "expires_in": 3600}}
            elif not exists:
                entry["actions"] = {
                    "upload": {"href": "%s/objects/%s" % (storage, oid),
                               "header": {"Authorization": sign(secret, "upload", oid)}, "expires_in": 3600},
                    "verify": {"href": "%s/verify?oid=%s" % (storage, oid),
                               "header": {"Authorization": sign(secret, "verify", oid)},
                               "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))},
                }
            objects.append(entry)
        send_json(handler, 200, {"transfer": knobs.get("lfs_transfer") or "basic", "objects": objects, "hash_algo": "sha256"})
        return
    with LOCKS_MUTEX:
        if rest == "locks" and handler.command == "GET":
            send_json(handler, 200, {"locks": list(LOCKS.values())})
        elif rest == "locks" and handler.command == "POST":
            lock_path = request.get("path", "")
            if any(l["path"] == lock_path for l in LOCKS.values()):
                send_json(handler, 409, {"message": "already locked"})
                return
            lock = {"id": str(len(LOCKS) + 1), "path": lock_path, "locked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "owner": {"name": "x-access-token"}}
            LOCKS[lock["id"]] = lock
            send_json(handler, 201, {"lock": lock})
        elif rest == "locks/verify":
            send_json(handler, 200, {"ours": list(LOCKS.values()), "theirs": []})
        elif rest.startswith("locks/") and rest.endswith("/unlock"):
            lock = LOCKS.pop(rest.split("/")[1], None)
            if lock is None:
                send_json(handler, 404, {"message": "no such lock"})
            else:
                send_json(handler, 200, {"lock": lock})
        else:
            send_json(handler, 404, {"message": "stand-in: no such LFS endpoint"})


class StorageHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "airlock-test-lfs-storage/1"

    def log_message(self, fmt, *args):
        sys.stderr.write("lfs-storage: %s\n" % (fmt % args))

    def send_text(self, status, text):
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def capture(self):
        if ARGS.capture:
            with open(ARGS.capture, "a") as f:
                f.write(json.dumps({"method": self.command, "path": self.path,
                                    "headers": [[n, v] for n, v in self.headers.items()]}) + "\n")

    def authorized(self, op, oid):
        given = self.headers.get_all("Authorization") or []
        if len(given) == 1 and hmac.compare_digest(given[0].encode(), sign(SECRET, op, oid).encode()):
            return True
        self.close_connection = True
        self.send_text(403, "storage: missing or wrong action header")
        return False

    def object_path(self):
        path = self.path.split("?", 1)[0]
        if not path.startswith("/objects/") or not OID.match(path[len("/objects/"):]):
            return None, None
        oid = path[len("/objects/"):]
        return oid, os.path.join(ARGS.root, "objects", oid)

    def do_GET(self):
        self.capture()
        oid, file = self.object_path()
        if oid is None:
            self.send_text(404, "storage: no such path")
            return
        if not self.authorized("download", oid):
            return
        if not os.path.exists(file):
            self.send_text(404, "storage: no such object")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(os.path.getsize(file)))
        self.end_headers()
        with open(file, "rb") as f:
            while True:
                piece = f.read(65536)
                if not piece:
                    break
                self.wfile.write(piece)

    def do_PUT(self):
        self.capture()
        oid, file = self.object_path()
        if oid is None:
            self.send_text(404, "storage: no such path")
            return
        if not self.authorized("upload", oid):
            return
        remaining = int(self.headers.get("Content-Length") or 0)
        digest = hashlib.sha256()
        os.makedirs(os.path.dirname(file), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(file))
        with os.fdopen(fd, "wb") as out:
            while remaining > 0:
                piece = self.rfile.read(min(remaining, 65536))
                if not piece:
                    break
                digest.update(piece)
                out.write(piece)
                remaining -= len(piece)
        if remaining or digest.hexdigest() != oid:
            os.unlink(tmp)
            self.send_text(422, "storage: the body does not match the oid")
            return
        os.rename(tmp, file)
        self.send_text(200, "stored")

    def do_POST(self):
        self.capture()
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if path != "/verify":
            self.send_text(404, "storage: no such path")
            return
        try:
            request = json.loads(body)
        except ValueError:
            self.send_text(400, "storage: malformed JSON")
            return
        oid = request.get("oid", "")
        if not OID.match(oid) or query != "oid=" + oid:
            self.send_text(422, "storage: wrong oid")
            return
        if not self.authorized("verify", oid):
            return
        file = os.path.join(ARGS.root, "objects", oid)
        if not os.path.exists(file) or os.path.getsize(file) != request.get("size"):
            self.send_text(404, "storage: object missing or of the wrong size")
            return
        self.send_text(200, "verified")


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


ARGS = None
SECRET = None


def main():
    global ARGS, SECRET
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--secret-file", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--capture")
    ARGS = p.parse_args()
    with open(ARGS.secret_file) as f:
        SECRET = f.read().strip()
    server = Server(("127.0.0.1", ARGS.port), StorageHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(ARGS.cert, ARGS.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
