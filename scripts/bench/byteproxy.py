#!/usr/bin/env python3
"""A tiny TCP byte-counting proxy for the benchmark (stdlib only).

    byteproxy.py --upstream 127.0.0.1:46580 --port-file DIR/proxy.ports

Listens on 127.0.0.1 (an ephemeral port unless --listen-port is given) and
forwards every connection to --upstream, counting the bytes that flow in each
direction. A second listener on 127.0.0.1 (the control port) answers any HTTP
request with the counters as JSON:

    {"down": bytes server->client, "up": bytes client->server,
     "open": connections open now, "conns": connections accepted so far}

The counters only grow; a measurement reads them before and after a client run
(after the client has exited and `open` has dropped back to 0) and subtracts.
--port-file receives "<proxy port> <control port>" once both listen.
Binds to 127.0.0.1 only. Stops on SIGTERM/SIGINT.
"""

import argparse
import asyncio
import json
import os
import signal

COUNTERS = {"down": 0, "up": 0, "open": 0, "conns": 0}
CHUNK = 256 * 1024


async def _pipe(reader, writer, key):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            COUNTERS[key] += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def _handle(creader, cwriter, upstream):
    COUNTERS["conns"] += 1
    COUNTERS["open"] += 1
    swriter = None
    try:
        host, port = upstream
        try:
            sreader, swriter = await asyncio.wait_for(
                asyncio.open_connection(host, port), timeout=10)
        except (OSError, asyncio.TimeoutError):
            return
        await asyncio.gather(_pipe(creader, swriter, "up"),
                             _pipe(sreader, cwriter, "down"))
    finally:
        for w in (cwriter, swriter):
            if w is not None:
                try:
                    w.close()
                except OSError:
                    pass
        COUNTERS["open"] -= 1


async def _control(reader, writer):
    try:
        # Read (and ignore) the request head, bounded.
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError):
            pass
        body = json.dumps(COUNTERS).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: " +
                     str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True, help="HOST:PORT")
    ap.add_argument("--listen-port", type=int, default=0)
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    host, _, port = args.upstream.rpartition(":")
    upstream = (host or "127.0.0.1", int(port))

    proxy = await asyncio.start_server(
        lambda r, w: _handle(r, w, upstream), "127.0.0.1", args.listen_port,
        limit=CHUNK)
    control = await asyncio.start_server(_control, "127.0.0.1",
                                         args.control_port)
    pport = proxy.sockets[0].getsockname()[1]
    cport = control.sockets[0].getsockname()[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{pport} {cport}\n")
    os.replace(tmp, args.port_file)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    proxy.close()
    control.close()


if __name__ == "__main__":
    asyncio.run(main())
