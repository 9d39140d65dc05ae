#!/usr/bin/env python3
"""A stand-in for a model API and the GitHub REST API over HTTPS on 127.0.0.1, for airlock's
credential-route tests.

Every request is appended to the capture file as one JSON line (method, path, headers,
Authorization among them), so a test can see which key or token reached the upstream.
Answers never repeat a request header.
  POST /v1/messages, /v1/chat/completions   200 JSON naming the path and the body's length;
                                            when the body is a JSON request with "messages"
                                            (what the anthropic and openai SDKs send), an
                                            answer in the provider's own shape instead, and
                                            with "stream": true its server-sent events, three
                                            text pieces 0.7 s apart
  POST /v1[beta]/models/MODEL:generateContent  200 JSON in Gemini's shape (what the google-genai
                                            SDK reads); :streamGenerateContent?alt=sse its
                                            server-sent events, three pieces 0.7 s apart
  POST /repos/OWNER/REPO/pulls              201 JSON like GitHub's new pull request
                                            (number 1, the body's length)
  GET  /v1/stream?pieces=N&gap=S            200 text/event-stream: N events, S seconds apart,
                                            each flushed as it is written (chunked)
  GET  /v1/redirect                         302 to https://elsewhere.invalid/
  anything else                             200 JSON naming the path

Usage: api-server.py --port P --cert CERT --key KEY --capture FILE
Prints "listening on ADDR:PORT" when ready.
"""
import argparse
import json
import socketserver
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    capture = None

    def log_message(self, fmt, *args):
        pass

    def _record(self):
        entry = {"method": self.command, "path": self.path,
                 "headers": [[k.lower(), v] for k, v in self.headers.items()]}
        with open(self.capture, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def _json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self):
        self._record()
        url = urlsplit(self.path)
        if url.path == "/v1/stream":
            query = parse_qs(url.query)
            pieces = int(query.get("pieces", ["3"])[0])
            gap = float(query.get("gap", ["1"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(pieces):
                event = f"data: piece {i}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
                if i + 1 < pieces:
                    time.sleep(gap)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        if url.path == "/v1/redirect":
            self.send_response(302)
            self.send_header("Location", "https://elsewhere.invalid/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._json(200, {"path": url.path})

    def _events(self, events):
        """Writes server-sent events (chunked), a pause between the text pieces."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for pause, text in events:
            if pause:
                time.sleep(0.7)
            data = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _sdk_answer(self, path, body):
        """Answers an SDK-shaped request in the provider's shape; False when it is not one."""
        try:
            request = json.loads(body)
        except ValueError:
            return False
        if not isinstance(request, dict) or "messages" not in request:
            return False
        model, pieces = request.get("model", "m"), ["one ", "two ", "three"]
        if path == "/v1/messages" and request.get("stream"):
            def event(name, data):
                return f"event: {name}\ndata: {json.dumps(data)}\n\n"
            message = {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [],
                       "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 0}}
            self._events([(False, event("message_start", {"type": "message_start", "message": message})),
                          (False, event("content_block_start", {"type": "content_block_start", "index": 0,
                                                                "content_block": {"type": "text", "text": ""}}))]
                         + [(i > 0, event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                                  "delta": {"type": "text_delta", "text": p}}))
                            for i, p in enumerate(pieces)]
                         + [(False, event("content_block_stop", {"type": "content_block_stop", "index": 0})),
                            (False, event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                            "stop_sequence": None}, "usage": {"output_tokens": 3}})),
                            (False, event("message_stop", {"type": "message_stop"}))])
            return True
        if path == "/v1/messages":
            self._json(200, {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                             "content": [{"type": "text", "text": f"hello from the stand-in ({len(body)} bytes)"}],
                             "stop_reason": "end_turn", "stop_sequence": None,
                             "usage": {"input_tokens": 1, "output_tokens": 5}})
            return True
        if path == "/v1/chat/completions" and request.get("stream"):
            def chunk(delta, finish=None):
                return "data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model,
                                              "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"
            self._events([(False, chunk({"role": "assistant", "content": ""}))]
                         + [(i > 0, chunk({"content": p})) for i, p in enumerate(pieces)]
                         + [(False, chunk({}, "stop")), (False, "data: [DONE]\n\n")])
            return True
        if path == "/v1/chat/completions":
            self._json(200, {"id": "c1", "object": "chat.completion", "created": 0, "model": model,
                             "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                 "role": "assistant", "content": f"hello from the stand-in ({len(body)} bytes)"}}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6}})
            return True
        return False

    def _gemini_answer(self, path, body):
        """Answers a Gemini-shaped request (`/v1beta/models/M:generateContent`, or `/v1/…`); False when it is not one."""
        name, _, method = path.rpartition(":")
        prefix = next((p for p in ("/v1beta/models/", "/v1/models/") if name.startswith(p)), None)
        if prefix is None or method not in ("generateContent", "streamGenerateContent"):
            return False
        model = name[len(prefix):]

        def response(text, finish=None):
            candidate = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
            if finish:
                candidate["finishReason"] = finish
            return {"candidates": [candidate], "modelVersion": model,
                    "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2}}
        if method == "streamGenerateContent":
            pieces = ["one ", "two ", "three"]
            self._events([(i > 0, "data: " + json.dumps(response(p, "STOP" if i == 2 else None)) + "\r\n\r\n")
                          for i, p in enumerate(pieces)])
        else:
            self._json(200, response(f"hello from the stand-in ({len(body)} bytes)", "STOP"))
        return True

    def do_POST(self):
        self._record()
        body = self._body()
        path = urlsplit(self.path).path
        if self._sdk_answer(path, body) or self._gemini_answer(path, body):
            return
        parts = path.split("/")
        if len(parts) == 5 and parts[1] == "repos" and parts[4] == "pulls":
            self._json(201, {"number": 1, "state": "open", "url": f"https://api.github.com{path}/1",
                             "received_bytes": len(body)})
            return
        self._json(200, {"path": path, "received_bytes": len(body)})


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--capture", required=True)
    a = p.parse_args()
    Handler.capture = a.capture
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
