#!/usr/bin/env python3
"""Measures the gateway's TLS termination against nginx with the same certificate
(ECDSA P-256, made by openssl for the run), one worker each pinned to CPU 0, the load
and the origin on CPU 1, interleaved in one run.

Scenarios:
  keepalive   HTTPS keep-alive, small JSON body: wrk -c64; CPU µs per request.
  close       a new connection and a full handshake per request under load (wrk -c16
              with `Connection: close`): handshakes/s and the proxy's CPU µs each.
  handshake   the same one connection at a time (openssl s_time -new).
  resumed     one at a time with session resumption (openssl s_time -reuse).
  idle        memory per idle TLS keep-alive connection (2,000 held open).

Run it through bench/run --tls, which installs the tools and builds the gateways.
Every run checks its responses: a run with errors fails the benchmark.
"""

import argparse
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the shared process, nginx and report helpers)

ROOT = bench.ROOT
GATEWAY = os.environ.get("GATEWAY_TLS_BIN", os.path.join(ROOT, "target", "release", "bench-tls-gateway"))
NGINX_TLS_PORT, GATEWAY_TLS_PORT = 28444, 28443
PATH = "/api/users/42"
IDLE_CONNECTIONS = 2000


def make_certificate(workdir):
    """One ECDSA P-256 certificate for `bench.test`, self-signed, used by both."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", os.path.join(workdir, "key.pem"), "-out", os.path.join(workdir, "cert.pem"),
         "-days", "90", "-subj", "/CN=bench.test", "-addext", "subjectAltName=DNS:bench.test"],
        check=True, capture_output=True,
    )


def nginx_tls_conf(workdir):
    return bench.nginx_conf(
        workdir,
        "tls-proxy",
        f"""
    upstream origin {{ server 127.0.0.1:{bench.ORIGIN_PORT}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{NGINX_TLS_PORT} ssl http2 backlog=4096;
        ssl_certificate {workdir}/cert.pem;
        ssl_certificate_key {workdir}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on;
        location ~ ^/api/users/[^/]+$ {{
            limit_except GET {{ deny all; }}
            {bench.PROXY_PASS}
        }}
    }}""",
    )


def cpu_seconds(pids):
    """CPU time of the processes' threads, from the scheduler's nanosecond counters:
    a handshake costs a few hundred microseconds, below the 10 ms of /proc's ticks."""
    total = 0
    for pid in pids:
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e9


def start(name, binary, workdir):
    if name == "nginx":
        cmd = ["taskset", "-c", "0", "nginx", "-c", nginx_tls_conf(workdir), "-p", workdir]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = NGINX_TLS_PORT
    else:
        env = dict(os.environ, WORKERS="1", BIND=f"127.0.0.1:{GATEWAY_TLS_PORT}",
                   ORIGIN=f"http://127.0.0.1:{bench.ORIGIN_PORT}", RUST_LOG="warn")
        proc = subprocess.Popen(["taskset", "-c", "0", binary], env=env, cwd=workdir,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = GATEWAY_TLS_PORT
    bench.wait_port(port)
    return proc, port


def client_context(workdir):
    context = ssl.create_default_context(cafile=os.path.join(workdir, "cert.pem"))
    context.set_alpn_protocols(["http/1.1"])
    return context


def check(port, workdir):
    """One request by hand over TLS: status 200 and the whole body."""
    context = client_context(workdir)
    bench.check_body(port, PATH, len(bench.SMALL_JSON),
                     wrap=lambda s: context.wrap_socket(s, server_hostname="bench.test"))


def keepalive(proc, port, seconds, close=False):
    """wrk over HTTPS; with `close`, every request on a new connection."""
    pids = bench.pids_of(proc.pid)
    before = cpu_seconds(pids)
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c16" if close else "-c64", f"-d{seconds}s", "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"https://127.0.0.1:{port}{PATH}")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pids) - before
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"port {port}: errors in the keep-alive run:\n{out}")
    return {"rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "cpu_us": cpu * 1e6 / max(requests, 1)}


def handshakes(proc, port, seconds, reuse):
    """openssl s_time: a new TLS connection per GET; `reuse` resumes the first session."""
    pids = bench.pids_of(proc.pid)
    before = cpu_seconds(pids)
    cmd = ["taskset", "-c", "1", "openssl", "s_time", "-connect", f"127.0.0.1:{port}",
           "-www", PATH, "-time", str(seconds), "-reuse" if reuse else "-new"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pids) - before
    m = re.search(r"(\d+) connections in ([\d.]+) real seconds", out)
    if not m:
        raise RuntimeError(f"port {port}: s_time said:\n{out}")
    connections, real = int(m.group(1)), float(m.group(2))
    if reuse:
        # s_time marks a resumed connection `r` and a full one `*` (OpenSSL 3 prints
        # them as it goes); all but the first must resume.
        full = out.count("*")
        if full > 1:
            raise RuntimeError(f"port {port}: {full} full handshakes in the resumption run")
    return {"rate": connections / real, "cpu_us": cpu * 1e6 / max(connections, 1)}


def idle_memory(proc, port, workdir):
    pids = bench.pids_of(proc.pid)
    before = bench.rss_kib(pids)
    context = client_context(workdir)
    held = []
    request = f"GET {PATH} HTTP/1.1\r\nHost: bench.test\r\n\r\n".encode()
    for _ in range(IDLE_CONNECTIONS):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        s = context.wrap_socket(raw, server_hostname="bench.test")
        s.sendall(request)
        data = b""
        while not data.endswith(bench.SMALL_JSON.encode()):
            data += s.recv(4096)
        held.append(s)
    time.sleep(0.5)
    after = bench.rss_kib(pids)
    for s in held:
        s.close()
    return {"bytes": (after - before) * 1024 / IDLE_CONNECTIONS}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--also", action="append", default=[], metavar="NAME=BINARY",
                        help="measure another gateway build in the same rounds (a crypto provider, a before)")
    args = parser.parse_args()
    candidates = [("nginx", None), ("gateway", GATEWAY)] + [tuple(a.split("=", 1)) for a in args.also]
    bench.require_free_ports([bench.ORIGIN_PORT, NGINX_TLS_PORT, GATEWAY_TLS_PORT])
    workdir = tempfile.mkdtemp(prefix="gateway-bench-tls-")
    make_certificate(workdir)
    origin = subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", bench.origin_conf(workdir), "-p", workdir],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {}
    try:
        bench.wait_port(bench.ORIGIN_PORT)
        for round_ in range(args.rounds):
            for name, binary in candidates:
                proc, port = start(name, binary, workdir)
                try:
                    check(port, workdir)
                    runs = {
                        "keepalive": keepalive(proc, port, args.seconds),
                        "close": keepalive(proc, port, args.seconds, close=True),
                        "handshake": handshakes(proc, port, args.seconds, reuse=False),
                        "resumed": handshakes(proc, port, args.seconds, reuse=True),
                    }
                    if round_ == 0:
                        runs["idle"] = idle_memory(proc, port, workdir)
                finally:
                    bench.stop(proc)
                for scenario, r in runs.items():
                    results.setdefault((scenario, name), []).append(r)
                    bench.log(f"   round {round_ + 1} {name:8} {scenario:10} {r}")
    finally:
        bench.stop(origin)
        shutil.rmtree(workdir, ignore_errors=True)

    nginx_version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    print(f"TLS: ECDSA P-256, TLS 1.3, one worker each on CPU 0; {nginx_version}; "
          f"{args.rounds} round(s) of {args.seconds} s, medians.\n")
    print("| scenario | candidate | rate/s | CPU µs (min–max) | CPU vs nginx |")
    print("|---|---|---|---|---|")
    med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    for scenario, unit in [("keepalive", "per request"), ("close", "per handshake"),
                           ("handshake", "per handshake"), ("resumed", "per handshake")]:
        nginx_cpu = med(results[(scenario, "nginx")], "cpu_us")
        for name, _ in candidates:
            runs = results[(scenario, name)]
            lo, hi = min(r["cpu_us"] for r in runs), max(r["cpu_us"] for r in runs)
            print(f"| {scenario} ({unit}) | {name} | {med(runs, 'rate'):,.0f} | "
                  f"{med(runs, 'cpu_us'):,.1f} ({lo:,.1f}–{hi:,.1f}) | {med(runs, 'cpu_us') / nginx_cpu:.2f} |")
    idle = ", ".join(f"{name} {results[('idle', name)][0]['bytes']:,.0f} bytes" for name, _ in candidates)
    print(f"\nIdle TLS keep-alive connection ({IDLE_CONNECTIONS:,} held): {idle}")


if __name__ == "__main__":
    main()
