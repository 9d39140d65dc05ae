#!/usr/bin/env python3
"""A local web server for airlock's tests, benchmarks and demo: plain HTTP or HTTPS on 127.0.0.1.

Every page names the Host it was asked for, so a test can tell which name reached it:
  GET /anything        200 "host=<Host> path=<path>"
  GET /big?bytes=N     200, N bytes streamed in 64 KiB pieces (Content-Length set)
  POST /echo           200, the request body echoed back (Content-Length or chunked)
  GET /ws-echo         a WebSocket upgrade (101, RFC 6455 handshake); the first text frame
                       comes back prefixed with "echo from <Host>: ", then the server closes

Usage: web-server.py --port P [--cert CERT --key KEY] [--bind 127.0.0.1]
Prints "listening on ADDR:PORT" when ready. Binds loopback unless told otherwise.
"""
import argparse
import base64
import hashlib
import socketserver
import ssl
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

CHUNK = b"x" * 65536


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _websocket_echo(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.end_headers()
        self.wfile.flush()
        first, second = self.rfile.read(2)
        length = second & 0x7F
        if length >= 126:  # the tests send short frames only
            self.close_connection = True
            return
        mask = self.rfile.read(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
        reply = f"echo from {self.headers.get('Host', '')}: ".encode() + payload
        self.wfile.write(bytes([0x81, len(reply)]) + reply if len(reply) < 126 else b"")
        self.wfile.flush()
        self.close_connection = True

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/ws-echo" and self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket_echo()
            return
        if url.path == "/big":
            n = int(parse_qs(url.query).get("bytes", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            while n > 0:
                piece = CHUNK[: min(n, len(CHUNK))]
                self.wfile.write(piece)
                n -= len(piece)
            return
        host = self.headers.get("Host", "")
        self._send(200, f"host={host} path={url.path}".encode())

    def do_POST(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._send(200, body, "application/octet-stream")


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--cert")
    p.add_argument("--key")
    a = p.parse_args()
    server = Server((a.bind, a.port), Handler)
    if a.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(a.cert, a.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening on {a.bind}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
