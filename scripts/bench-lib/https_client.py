#!/usr/bin/env python3
"""Many small HTTPS requests, each on a new connection, optionally through a CONNECT proxy.

    https_client.py --connect ADDR:PORT [--via-proxy HOST:PORT] --sni NAME --cafile F
                    (--count N | --duration S --workers W) [--timeout S] [--max-errors N]

One request: TCP connect, CONNECT (when proxied), TLS handshake with certificate and
hostname verification, `GET /small`, the whole 1 KiB answer, close.
--count N: N requests one after another; prints {"latencies_ms": [...], "errors": E}.
--duration S --workers W: W processes loop for S seconds; prints {"requests", "errors",
"seconds", "rps"}. Bounded in count (--count, or 100000 per worker), in errors (--max-errors,
5 by default, per worker) and in time (each request --timeout, each phase 120 s).
"""
import argparse
import json
import multiprocessing
import socket
import ssl
import sys
import time


def one_request(args, context):
    host, _, port = args.connect.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=args.timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if args.via_proxy:
            sock.sendall(f"CONNECT {args.via_proxy} HTTP/1.1\r\nHost: {args.via_proxy}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                data = sock.recv(4096)
                if not data:
                    raise OSError("proxy closed")
                head += data
            if head[8:12] != b" 200":
                raise OSError("CONNECT refused: " + head.split(b"\r\n", 1)[0].decode("latin-1"))
        tls = context.wrap_socket(sock, server_hostname=args.sni)
        tls.sendall(f"GET /small HTTP/1.1\r\nHost: {args.sni}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            piece = tls.recv(65536)
            if not piece:
                break
            data += piece
            if b"\r\n\r\n" in data:
                head, _, body = data.partition(b"\r\n\r\n")
                length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")][0])
                if len(body) >= length:
                    break
        if not data.startswith(b"HTTP/1.1 200"):
            raise OSError("bad answer")
    finally:
        sock.close()


def make_context(args):
    context = ssl.create_default_context(cafile=args.cafile)
    return context


def worker(args, deadline, queue):
    context = make_context(args)
    done = errors = 0
    while time.monotonic() < deadline and done + errors < 100000 and errors < args.max_errors:
        try:
            one_request(args, context)
            done += 1
        except (OSError, ssl.SSLError, ValueError, IndexError):
            errors += 1
    queue.put((done, errors))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--connect", required=True)
    parser.add_argument("--via-proxy")
    parser.add_argument("--sni", required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--count", type=int)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=5)
    parser.add_argument("--max-errors", type=int, default=5, help="stop after this many failed requests")
    args = parser.parse_args()
    if args.count:
        context = make_context(args)
        latencies, errors, first_error = [], 0, None
        deadline = time.monotonic() + 120
        for _ in range(min(args.count, 100000)):
            if time.monotonic() > deadline or errors >= args.max_errors:
                break
            start = time.perf_counter()
            try:
                one_request(args, context)
                latencies.append((time.perf_counter() - start) * 1000)
            except (OSError, ssl.SSLError, ValueError, IndexError) as error:
                errors += 1
                first_error = first_error or str(error)
        print(json.dumps({"latencies_ms": latencies, "errors": errors, "first_error": first_error}))
    elif args.duration:
        queue = multiprocessing.Queue()
        start = time.monotonic()
        deadline = start + min(args.duration, 120)
        procs = [multiprocessing.Process(target=worker, args=(args, deadline, queue)) for _ in range(args.workers)]
        for proc in procs:
            proc.start()
        results = [queue.get(timeout=args.duration + 60) for _ in procs]
        for proc in procs:
            proc.join()
        seconds = time.monotonic() - start
        done = sum(r[0] for r in results)
        print(json.dumps({"requests": done, "errors": sum(r[1] for r in results), "seconds": seconds,
                          "rps": done / seconds}))
    else:
        sys.exit("https_client: need --count or --duration")


if __name__ == "__main__":
    main()
