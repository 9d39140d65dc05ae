#!/usr/bin/env python3
"""A TCP relay that adds a fixed delay each way: a far-away upstream on a machine whose
kernel has no netem.

    delay_relay.py --listen [NETNS@]ADDR:PORT ... --to ADDR:PORT --delay-ms 10

Every byte read from one side is written to the other `--delay-ms` after it was read, in
order, so a round trip through the relay costs twice the delay (a TLS handshake too; the
TCP handshake, which the relay answers locally, is charged as one round trip before the
first byte goes on) while throughput stays that of the link. Listening sockets are created inside the
given network namespaces (as upstream.py does); connections to `--to` are made from the
relay's own namespace. Local addresses only: `--to` must be on 127.0.0.0/8 or ::1.
Bounded: at most `--max-connections` relayed at once (more are closed at once), and at most
`--window` bytes in flight per direction (reading waits while that many are delayed).
"""

import argparse
import asyncio
import ipaddress
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from upstream import bind_in  # noqa: E402

READ = 64 * 1024


async def pump(reader, writer, delay, window):
    """Copies reader to writer, each piece `delay` seconds after it was read."""
    queue = asyncio.Queue()
    room = asyncio.Semaphore(max(1, window // READ))

    async def read_side():
        try:
            while True:
                await room.acquire()
                data = await reader.read(READ)
                queue.put_nowait((time.monotonic() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            queue.put_nowait((time.monotonic() + delay, b""))

    async def write_side():
        try:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
                room.release()
        except (ConnectionError, OSError):
            return

    await asyncio.gather(read_side(), write_side())


class Relay:
    def __init__(self, args):
        self.target = args.to
        self.delay = args.delay_ms / 1000
        self.window = args.window
        self.limit = args.max_connections
        self.active = 0

    async def serve(self, client_reader, client_writer):
        if self.active >= self.limit:
            client_writer.close()
            return
        self.active += 1
        try:
            host, port = self.target
            # The TCP handshake's round trip, which a user-space relay cannot delay: the
            # client's first bytes wait for it.
            await asyncio.sleep(2 * self.delay)
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except OSError:
                client_writer.close()
                return
            await asyncio.gather(pump(client_reader, up_writer, self.delay, self.window),
                                 pump(up_reader, client_writer, self.delay, self.window))
            for writer in (client_writer, up_writer):
                writer.close()
        finally:
            self.active -= 1


def local_target(text):
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not ipaddress.ip_address(host).is_loopback:
        raise argparse.ArgumentTypeError(f"--to {text}: only loopback addresses are relayed to")
    return host, int(port)


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", action="append", default=[], required=True)
    parser.add_argument("--to", type=local_target, required=True)
    parser.add_argument("--delay-ms", type=float, default=10)
    parser.add_argument("--window", type=int, default=4 << 20, help="bytes in flight per direction")
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--max-seconds", type=float, default=3600)
    args = parser.parse_args()
    relay = Relay(args)
    servers = []
    for spec in args.listen:
        netns, _, hostport = spec.rpartition("@")
        addr, _, port = hostport.rpartition(":")
        sock = bind_in(netns or None, addr, int(port))
        servers.append(await asyncio.start_server(relay.serve, sock=sock))
    print("ready", flush=True)
    await asyncio.sleep(args.max_seconds)


if __name__ == "__main__":
    asyncio.run(main())
