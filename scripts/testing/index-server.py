#!/usr/bin/env python3
"""A local Python package index for airlock's tests, shaped like PyPI: the simple index on one
host name, the files on another (as pypi.org and files.pythonhosted.org), over HTTPS on 127.0.0.1.

One package, `airlock-demo` 1.0, a pure-Python wheel built in memory at start:
  GET /simple/                       (index host) the project list
  GET /simple/airlock-demo/          (index host) a link to the wheel on the files host, with its sha256
  GET /packages/airlock_demo-1.0-py3-none-any.whl   (files host) the wheel
Anything else, or a path asked of the wrong host, is 404. Each request is printed to stdout as
"GET HOST PATH STATUS", so a test can tell which host was asked for what.

Usage: index-server.py --port P --cert CERT --key KEY --index-host NAME --files-host NAME
Prints "listening on ADDR:PORT" when ready.
"""
import argparse
import base64
import hashlib
import io
import socketserver
import ssl
import sys
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer

WHEEL_NAME = "airlock_demo-1.0-py3-none-any.whl"


def build_wheel():
    files = {
        "airlock_demo/__init__.py": b'GREETING = "hello from airlock-demo"\n',
        "airlock_demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: airlock-demo\nVersion: 1.0\n",
        "airlock_demo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: index-server.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = ""
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{name},sha256={digest},{len(data)}\n"
    record += "airlock_demo-1.0.dist-info/RECORD,,\n"
    files["airlock_demo-1.0.dist-info/RECORD"] = record.encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return buffer.getvalue()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    index_host = ""
    files_host = ""
    port = 0
    wheel = b""

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, body, content_type):
        host = self.headers.get("Host", "")
        print(f"GET {host} {self.path} {status}", flush=True)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        host = self.headers.get("Host", "").rsplit(":", 1)[0]
        path = self.path.split("?", 1)[0]
        if host == self.index_host and path == "/simple/":
            body = b'<!DOCTYPE html><html><body><a href="/simple/airlock-demo/">airlock-demo</a></body></html>\n'
            self._send(200, body, "text/html")
        elif host == self.index_host and path == "/simple/airlock-demo/":
            digest = hashlib.sha256(self.wheel).hexdigest()
            url = f"https://{self.files_host}:{self.port}/packages/{WHEEL_NAME}#sha256={digest}"
            body = f'<!DOCTYPE html><html><body><a href="{url}">{WHEEL_NAME}</a></body></html>\n'.encode()
            self._send(200, body, "text/html")
        elif host == self.files_host and path == f"/packages/{WHEEL_NAME}":
            self._send(200, self.wheel, "application/octet-stream")
        else:
            self._send(404, b"not found\n", "text/plain")


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--index-host", required=True)
    p.add_argument("--files-host", required=True)
    a = p.parse_args()
    Handler.index_host = a.index_host
    Handler.files_host = a.files_host
    Handler.port = a.port
    Handler.wheel = build_wheel()
    server = Server(("127.0.0.1", a.port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(a.cert, a.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
