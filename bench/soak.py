#!/usr/bin/env python3
"""Soak test: the gateway under ten minutes of mixed, hostile traffic on loopback.

Runs the gateway compiled from tests/gateways/e2e.toml (one worker) in front of an
upstream written here that answers, resets, stalls and closes early on demand, and
drives it with a mix of clients:

  keep-alive and new connections, pipelining, HTTP/1.0, h2c (h2load), bodies of
  0 B to 1 MiB with Content-Length and chunked, clients that drip their heads, that
  read slowly or stop reading, that leave in the middle of a request or a response,
  and requests to upstreams that reset, stall or close early.

Every ten seconds it prints the gateway's RSS, open file descriptors and the
upstream's open connections. At the end it reports outcomes by kind, and checks:

  * RSS is flat after warm-up (the last sample within 10% + 4 MiB of the sample at
    the end of the first minute);
  * once traffic stops and the pool's idle timeout passes, file descriptors are back
    to their baseline and no upstream connection is left;
  * while traffic runs, upstream connections never exceed what the clients can hold
    open plus the pool bound (128 idle per target);
  * no client ever waited past its bound (a hang is a defect).

    bench/soak.py                 10 minutes (what the issue asks for)
    bench/soak.py --seconds 60    a shorter run
"""

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GATEWAY = os.path.join(ROOT, "target", "release", "e2e-gateway")
POOL_BOUND = 128
CLIENT_BOUND = 20.0  # seconds any one client operation may take
MIB = 1 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the upstream -----------------------------------------------------------------


class Upstream:
    """Answers by path: /ok?size=N, /chunked?size=N, /echo (reads the body, answers its
    length), /reset (RST after the head), /stall (head and part of the body, then
    nothing), /close-early (declares 100000 bytes, sends 10, closes)."""

    def __init__(self):
        self.open = 0
        self.peak = 0

    async def serve(self, reader, writer):
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            while True:
                head = await read_head(reader)
                if head is None:
                    return
                line, fields = head
                target = line.split(b" ")[1].decode()
                path, _, query = target.partition("?")
                size = int(dict(p.split("=") for p in query.split("&") if "=" in p).get("size", "0"))
                body = await read_body(reader, fields)
                if path.endswith("/reset"):
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    writer.transport.abort()
                    return
                if path.endswith("/stall"):
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 1000)
                    await writer.drain()
                    # Nothing more, until the gateway gives up and closes.
                    await reader.read()
                    return
                if path.endswith("/close-early"):
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n0123456789")
                    await writer.drain()
                    return
                if path.endswith("/echo"):
                    reply = str(len(body)).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(reply) + reply)
                elif path.endswith("/chunked"):
                    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    left = size
                    while left > 0:
                        n = min(left, 16384)
                        writer.write(b"%x\r\n" % n + b"c" * n + b"\r\n")
                        left -= n
                        await writer.drain()
                    writer.write(b"0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
                    left = size
                    while left > 0:
                        n = min(left, 65536)
                        writer.write(b"o" * n)
                        left -= n
                        await writer.drain()
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            writer.close()


async def read_head(reader):
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = raw.split(b"\r\n")
    fields = {}
    for line in lines[1:]:
        if b":" in line:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
    return lines[0], fields


async def read_body(reader, fields):
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    length = int(fields.get(b"content-length", b"0"))
    return await reader.readexactly(length) if length else b""


# --- the clients ------------------------------------------------------------------


class Client:
    def __init__(self, port, outcomes):
        self.port = port
        self.outcomes = outcomes

    async def connect(self):
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def response(self, reader, head_request=False):
        """(status, body) of one response; raises on a broken one."""
        head = await read_head(reader)
        if head is None:
            raise ConnectionError("closed before a response")
        line, fields = head
        status = int(line.split(b" ")[1])
        if head_request or status in (204, 304):
            return status, b""
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked" or b"content-length" in fields:
            return status, await read_body(reader, fields)
        return status, await reader.read()

    def expect(self, kind, ok):
        self.outcomes[f"{kind}: {'ok' if ok else 'unexpected'}"] += 1

    async def keep_alive(self):
        reader, writer = await self.connect()
        for _ in range(5):
            size = random.choice([0, 150, 4096, 65536])
            path = random.choice(["ok", "chunked"])
            writer.write(b"GET /scripted/%s?size=%d HTTP/1.1\r\nhost: soak\r\n\r\n" % (path.encode(), size))
            status, body = await self.response(reader)
            self.expect("keep-alive GET", status == 200 and len(body) == size)
        writer.close()

    async def new_connection(self):
        reader, writer = await self.connect()
        writer.write(b"GET /scripted/ok?size=150 HTTP/1.1\r\nhost: soak\r\nconnection: close\r\n\r\n")
        status, body = await self.response(reader)
        self.expect("one-shot GET", status == 200 and len(body) == 150)
        writer.close()

    async def pipelined(self):
        reader, writer = await self.connect()
        writer.write(b"GET /scripted/ok?size=10 HTTP/1.1\r\nhost: soak\r\n\r\n" * 3)
        results = [await self.response(reader) for _ in range(3)]
        self.expect("pipelined GET", all(s == 200 and len(b) == 10 for s, b in results))
        writer.close()

    async def http10(self):
        reader, writer = await self.connect()
        writer.write(b"GET /scripted/chunked?size=3000 HTTP/1.0\r\n\r\n")
        status, body = await self.response(reader)
        self.expect("HTTP/1.0 GET", status == 200 and len(body) == 3000)
        writer.close()

    async def upload(self):
        size = random.choice([0, 1, 1000, 100_000, MIB])
        reader, writer = await self.connect()
        if random.random() < 0.5:
            writer.write(b"POST /scripted/echo HTTP/1.1\r\nhost: soak\r\ncontent-length: %d\r\n\r\n" % size)
            writer.write(b"u" * size)
            kind = "upload with length"
        else:
            writer.write(b"POST /scripted/echo HTTP/1.1\r\nhost: soak\r\ntransfer-encoding: chunked\r\n\r\n")
            left = size
            while left > 0:
                n = min(left, random.choice([1, 100, 8192, 65536]))
                writer.write(b"%x\r\n" % n + b"u" * n + b"\r\n")
                left -= n
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            kind = "upload chunked"
        await writer.drain()
        status, body = await self.response(reader)
        self.expect(kind, status == 200 and body == str(size).encode())
        writer.close()

    async def slow_head(self):
        reader, writer = await self.connect()
        for byte in b"GET /scripted/ok?size=5 HTTP/1.1\r\nhost: soak\r\n\r\n":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.01)
        status, body = await self.response(reader)
        self.expect("dripped head", status == 200 and body == b"ooooo")
        writer.close()

    async def slow_reader(self):
        reader, writer = await self.connect()
        writer.write(b"GET /scripted/ok?size=%d HTTP/1.1\r\nhost: soak\r\n\r\n" % MIB)
        got = 0
        for _ in range(5):
            got += len(await reader.read(4096))
            await asyncio.sleep(0.2)
        # Then stops reading for longer than the send timeout: the gateway lets go.
        await asyncio.sleep(3)
        writer.close()
        self.expect("slow reader", got > 0)

    async def leave_mid_request(self):
        reader, writer = await self.connect()
        writer.write(b"POST /scripted/echo HTTP/1.1\r\nhost: soak\r\ncontent-length: 100000\r\n\r\n" + b"u" * 5000)
        await writer.drain()
        writer.close()
        self.expect("left mid-request", True)

    async def leave_mid_response(self):
        reader, writer = await self.connect()
        writer.write(b"GET /scripted/ok?size=%d HTTP/1.1\r\nhost: soak\r\n\r\n" % MIB)
        await reader.read(1000)
        writer.transport.abort()
        self.expect("left mid-response", True)

    async def upstream_fault(self):
        kind = random.choice(["reset", "stall", "close-early"])
        reader, writer = await self.connect()
        writer.write(b"GET /scripted/%s HTTP/1.1\r\nhost: soak\r\n\r\n" % kind.encode())
        try:
            status, body = await self.response(reader)
            # A reset before any response is a 502; a stall or an early close after the
            # head cuts the body short, which the read above reports by raising.
            self.expect(f"upstream {kind}", kind == "reset" and status == 502)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.expect(f"upstream {kind}", kind != "reset")
        writer.close()

    SCENARIOS = [
        (keep_alive, 20),
        (new_connection, 10),
        (pipelined, 8),
        (http10, 5),
        (upload, 10),
        (slow_head, 3),
        (slow_reader, 2),
        (leave_mid_request, 4),
        (leave_mid_response, 4),
        (upstream_fault, 4),
    ]

    async def run(self, until):
        scenarios, weights = zip(*self.SCENARIOS)
        while time.monotonic() < until:
            scenario = random.choices(scenarios, weights)[0]
            try:
                await asyncio.wait_for(scenario(self), CLIENT_BOUND)
            except asyncio.TimeoutError:
                self.outcomes[f"{scenario.__name__}: HUNG past {CLIENT_BOUND:.0f} s"] += 1
            except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
                self.outcomes[f"{scenario.__name__}: {type(e).__name__}"] += 1


# --- measuring ----------------------------------------------------------------------


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


async def h2c_bursts(port, until, outcomes):
    """h2load for 5 s every 30 s, when it is installed (bench/run installs it)."""
    if not shutil.which("h2load"):
        outcomes["h2c: skipped, h2load not installed"] += 1
        return
    while time.monotonic() + 5 < until:
        proc = await asyncio.create_subprocess_exec(
            "h2load", "-D", "5", "-c", "4", "-m", "8",
            f"http://127.0.0.1:{port}/scripted/ok?size=2000",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await proc.communicate()
        for line in out.decode().splitlines():
            if line.startswith("status codes:"):
                ok = int(line.split()[2])
                outcomes["h2c GET (h2load): ok"] += ok
            if line.startswith("requests:"):
                parts = line.replace(",", "").split()
                failed = int(parts[parts.index("failed") - 1])
                if failed:
                    outcomes["h2c GET (h2load): failed"] += failed
        await asyncio.sleep(25)


async def main_async(args):
    upstream = Upstream()
    server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0, limit=1 << 20)
    upstream_port = server.sockets[0].getsockname()[1]
    port = free_port()
    refused = f"http://127.0.0.1:{free_port()}"
    env = dict(os.environ,
               MAIN_BIND=f"127.0.0.1:{port}", SCRIPTED=f"http://127.0.0.1:{upstream_port}",
               USERS_A=refused, USERS_B=refused, ORDERS=refused, DEAD=refused, STALLED=refused,
               HEADER_READ_TIMEOUT="5s", BODY_TIMEOUT="2s", SEND_TIMEOUT="2s",
               SCRIPTED_BODY_TIMEOUT="2s", SCRIPTED_RESPONSE_TIMEOUT="5s",
               SCRIPTED_IDLE_TIMEOUT=f"{args.idle}s", RUST_LOG="error")
    log = tempfile.TemporaryFile()
    gateway = subprocess.Popen([GATEWAY], env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        pid = gateway.pid
        baseline_fds = fds(pid)
        print(f"gateway pid {pid}: RSS {rss_kib(pid) / 1024:.1f} MiB, {baseline_fds} fds at start")
        outcomes = Counter()
        until = time.monotonic() + args.seconds
        clients = [Client(port, outcomes) for _ in range(args.clients)]
        tasks = [asyncio.create_task(c.run(until)) for c in clients]
        tasks.append(asyncio.create_task(h2c_bursts(port, until, outcomes)))
        samples = []
        started = time.monotonic()
        peak_upstream = 0
        while time.monotonic() < until:
            await asyncio.sleep(min(10, max(0.1, until - time.monotonic())))
            sample = (time.monotonic() - started, rss_kib(pid), fds(pid), upstream.open)
            samples.append(sample)
            peak_upstream = max(peak_upstream, upstream.open)
            done = sum(v for k, v in outcomes.items())
            print(f"{sample[0]:6.0f} s  RSS {sample[1] / 1024:6.1f} MiB  fds {sample[2]:4}  "
                  f"upstream connections {sample[3]:4}  outcomes {done}", flush=True)
        await asyncio.gather(*tasks)
        at_end = upstream.open
        # Bounded waits on the gateway's side (send, body and idle timeouts) end.
        await asyncio.sleep(args.idle + 3)
        quiet_fds, quiet_upstream = fds(pid), upstream.open
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(timeout=15)
        except subprocess.TimeoutExpired:
            gateway.kill()
        server.close()

    print("\noutcomes by kind:")
    for kind, n in sorted(outcomes.items()):
        print(f"  {n:8}  {kind}")
    failures = []
    hung = sum(n for k, n in outcomes.items() if "HUNG" in k)
    if hung:
        failures.append(f"{hung} client operations hung")
    unexpected = sum(n for k, n in outcomes.items() if "unexpected" in k or "failed" in k)
    total = sum(n for k, n in outcomes.items() if "skipped" not in k)
    print(f"\n{total} operations, {unexpected} with an unexpected outcome")
    if unexpected > total * 0.001:
        failures.append(f"{unexpected} unexpected outcomes")
    warm = next((s for s in samples if s[0] >= min(60, args.seconds / 4)), samples[0])
    last = samples[-1]
    print(f"RSS: {warm[1] / 1024:.1f} MiB after warm-up ({warm[0]:.0f} s), {last[1] / 1024:.1f} MiB at the end")
    if last[1] > warm[1] * 1.1 + 4096:
        failures.append("RSS grew after warm-up")
    print(f"file descriptors: {baseline_fds} at start, {quiet_fds} after the pool's idle timeout")
    if quiet_fds != baseline_fds:
        failures.append("file descriptors did not return to baseline")
    bound = args.clients + 4 * 8 + POOL_BOUND
    print(f"upstream connections: peak {max(peak_upstream, upstream.peak)} (bound {bound}), "
          f"{at_end} when traffic stopped, {quiet_upstream} after the idle timeout")
    if upstream.peak > bound:
        failures.append("more upstream connections than clients plus the pool bound")
    if quiet_upstream:
        failures.append("upstream connections left open after the idle timeout")
    log.seek(0, os.SEEK_END)
    print(f"gateway error log: {log.tell()} bytes")
    if failures:
        print("\nFAILED: " + "; ".join(failures))
        return 1
    print("\npassed")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--idle", type=int, default=5, help="the upstream pool's idle timeout, seconds")
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "gateway-tests", "--bin", "e2e-gateway"],
                   cwd=ROOT, check=True)
    random.seed(1)
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
