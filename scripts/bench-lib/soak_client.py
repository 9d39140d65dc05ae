#!/usr/bin/env python3
"""Mixed allowed and refused traffic through airlock's gateway, for the soak case of scripts/bench.

    soak_client.py --gateway ADDR --cafile F --duration S --workers W

Each of W processes loops for S seconds over: an HTTPS request through CONNECT to the
allowed upstream (TLS verified, `GET /small`); a CONNECT to a refused name (403 expected);
a plain GET through the proxy to the allowed upstream (`/small`, 200); a plain GET to a
refused name (403); a DNS query for the allowed name (an answer) and for a refused one
(no address). Prints {"ops", "bad", "first_bad", "seconds", "by_kind"} once at the end.
Bounded in time (S, each operation 10 s) and in failures (stops after 50 per worker).
"""
import argparse
import json
import multiprocessing
import socket
import ssl
import struct
import time

ALLOWED, DENIED = "upstream.test", "denied.example"


def read_head(sock):
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            raise OSError("closed before the answer's head")
        head += data
        if len(head) > 65536:
            raise OSError("answer head too large")
    return head


def read_answer(sock):
    """Status code, after reading the whole body (Content-Length)."""
    head = read_head(sock)
    top, _, body = head.partition(b"\r\n\r\n")
    status = int(top[9:12])
    length = 0
    for line in top.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            raise OSError("body cut short")
        body += data
    return status


def https_allowed(args, context):
    with socket.create_connection((args.gateway, 3128), timeout=10) as sock:
        sock.sendall(f"CONNECT {ALLOWED}:443 HTTP/1.1\r\nHost: {ALLOWED}:443\r\n\r\n".encode())
        head = read_head(sock)
        if head[9:12] != b"200":
            raise OSError("CONNECT to the allowed name: " + head.split(b"\r\n", 1)[0].decode("latin-1"))
        with context.wrap_socket(sock, server_hostname=ALLOWED) as tls:
            tls.sendall(f"GET /small HTTP/1.1\r\nHost: {ALLOWED}\r\nConnection: close\r\n\r\n".encode())
            if read_answer(tls) != 200:
                raise OSError("the allowed HTTPS request did not get 200")


def connect_denied(args, _context):
    with socket.create_connection((args.gateway, 3128), timeout=10) as sock:
        sock.sendall(f"CONNECT {DENIED}:443 HTTP/1.1\r\nHost: {DENIED}:443\r\n\r\n".encode())
        status = read_answer(sock)
        if status != 403:
            raise OSError(f"CONNECT to a refused name answered {status}")


def plain(host, expected):
    def op(args, _context):
        with socket.create_connection((args.gateway, 3128), timeout=10) as sock:
            port = ":8080" if host == ALLOWED else ""
            sock.sendall(f"GET http://{host}{port}/small HTTP/1.1\r\nHost: {host}{port}\r\nConnection: close\r\n\r\n".encode())
            status = read_answer(sock)
            if status != expected:
                raise OSError(f"GET http://{host}/ answered {status}, not {expected}")
    return op


def dns(name, answered):
    def op(args, _context):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            qid = int(time.monotonic_ns() & 0xFFFF)
            question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
            sock.sendto(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1),
                        (args.gateway, 53))
            reply = sock.recv(4096)
            count = struct.unpack(">H", reply[6:8])[0]
            if reply[:2] != struct.pack(">H", qid) or (count > 0) != answered:
                raise OSError(f"DNS {name}: {count} answer(s)")
    return op


KINDS = [("https_allowed", https_allowed), ("connect_denied", connect_denied),
         ("http_allowed", plain(ALLOWED, 200)), ("http_denied", plain(DENIED, 403)),
         ("dns_allowed", dns(ALLOWED, True)), ("dns_denied", dns(DENIED, False))]


def worker(args, queue):
    context = ssl.create_default_context(cafile=args.cafile)
    deadline = time.monotonic() + args.duration
    counts = {kind: 0 for kind, _ in KINDS}
    bad, first_bad, i = 0, None, 0
    while time.monotonic() < deadline and bad < 50:
        kind, op = KINDS[i % len(KINDS)]
        i += 1
        try:
            op(args, context)
            counts[kind] += 1
        except Exception as error:  # counted and reported, never fatal
            bad += 1
            first_bad = first_bad or f"{kind}: {error}"
    queue.put((counts, bad, first_bad))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    args.duration = min(args.duration, 3600)
    queue = multiprocessing.Queue()
    started = time.monotonic()
    procs = [multiprocessing.Process(target=worker, args=(args, queue)) for _ in range(args.workers)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=args.duration + 120) for _ in procs]
    for proc in procs:
        proc.join(30)
    by_kind = {kind: sum(r[0][kind] for r in results) for kind, _ in KINDS}
    bad = sum(r[1] for r in results)
    first_bad = next((r[2] for r in results if r[2]), None)
    print(json.dumps({"ops": sum(by_kind.values()), "bad": bad, "first_bad": first_bad,
                      "seconds": round(time.monotonic() - started, 2), "by_kind": by_kind}))


if __name__ == "__main__":
    main()
