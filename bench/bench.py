#!/usr/bin/env python3
"""Measures the gateway against nginx doing the same job, interleaved in one run.

Candidates (per scenario): `direct` (wrk straight to the origin: the physical limit),
`nginx` (nginx as a reverse proxy with upstream keep-alive) and `gateway` (this project's
gateway built from bench/gateway.toml). Proxies are pinned to CPU 0 with one worker;
wrk and the nginx origin share CPU 1 (PERF.md's method), except in `two-workers`.

Per candidate: requests/s, p50/p99 latency, CPU microseconds per request (user + sys of
the proxy's processes), syscalls per request (perf tracepoints), RSS after the run, and,
in a separate pass under callgrind, user-space instructions per request. Medians over
rounds, with the spread. Every run checks status codes and counts errors: a run with
errors fails the benchmark.

Run it through bench/run, which installs the tools and builds the gateway.
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# GATEWAY_BIN measures another build, for before/after figures.
GATEWAY = os.environ.get("GATEWAY_BIN", os.path.join(ROOT, "target", "release", "bench-gateway"))
ORIGIN_PORT, NGINX_PORT, GATEWAY_PORT = 18080, 28081, 28080
# nginx serves h2c on a port of its own; the gateway detects it on its one port.
NGINX_H2C_PORT = 28082
CLK_TCK = os.sysconf("SC_CLK_TCK")
SMALL_JSON = json.dumps(
    {
        "id": 42,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "roles": ["admin", "editor"],
        "created": "2024-01-01T00:00:00Z",
        "active": True,
        "plan": "pro",
    },
    separators=(",", ":"),
)

# name: (path, description, pinned)
SCENARIOS = {
    "small": ("/api/users/42", "GET, ~150-byte JSON body", True),
    "16k": ("/static/16k.json", "GET, 16 KiB body", True),
    "1m": ("/static/1m.bin", "GET, 1 MiB body streamed", True),
    "two-workers": ("/api/users/42", "GET, ~150-byte body, 2 workers each, unpinned", False),
    "idle-10k": ("/api/users/42", "as small, with 10,000 idle keep-alive connections held open", True),
    "logged": ("/api/users/42", "as small, with an access log line per request written to a file", True),
    "h2c": ("/api/users/42", "as small, over HTTP/2 cleartext from the client (h2load), HTTP/1.1 to the origin", True),
    "policies": ("/api/gated/42", "as small, behind an IP allow rule and a request header rule (`X-Gateway: bench`)", True),
}
# Scenarios that also get a callgrind pass: instructions are what a feature's cost is
# judged by, against `small` in the same run.
CALLGRIND_SCENARIOS = {"small", "policies", "h2c"}


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


# === processes ===


def pids_of(root_pid):
    """The process and its children (nginx workers)."""
    children = subprocess.run(["pgrep", "-P", str(root_pid)], capture_output=True, text=True).stdout.split()
    return [root_pid] + [int(p) for p in children]


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / CLK_TCK


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def require_free_ports(ports):
    """Fails early when a port is taken: a leftover proxy from an interrupted run
    would otherwise answer in place of the candidate being measured."""
    for port in ports:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except OSError:
            continue
        sys.exit(f"port {port} is in use (a leftover nginx or gateway?); stop it and run again")


def wait_port(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# === nginx configurations ===


def nginx_conf(workdir, name, body, workers=1):
    conf = os.path.join(workdir, f"{name}.conf")
    with open(conf, "w") as f:
        f.write(
            f"""
worker_processes {workers};
daemon off;
user root;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}.error.log warn;
events {{ worker_connections 20000; }}
worker_rlimit_nofile 40000;
http {{
    access_log off;
    client_body_temp_path {workdir}/{name}-body;
    proxy_temp_path {workdir}/{name}-proxy;
    fastcgi_temp_path {workdir}/{name}-fastcgi;
    uwsgi_temp_path {workdir}/{name}-uwsgi;
    scgi_temp_path {workdir}/{name}-scgi;
    keepalive_requests 1000000;
    {body}
}}
"""
        )
    return conf


def origin_conf(workdir):
    return nginx_conf(
        workdir,
        "origin",
        f"""
    server {{
        listen 127.0.0.1:{ORIGIN_PORT} backlog=4096;
        location /api/users/ {{ default_type application/json; return 200 '{SMALL_JSON}'; }}
        location /api/gated/ {{ default_type application/json; return 200 '{SMALL_JSON}'; }}
        location /static/ {{ root {workdir}/www; }}
    }}""",
    )


# What nginx does for every proxied request, as the gateway does: upstream keep-alive
# and the X-Forwarded-* headers.
PROXY_PASS = """proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;"""


def proxy_conf(workdir, workers, valgrind=False, logged=False):
    extra = "master_process off;" if valgrind else ""
    access_log = f"access_log {workdir}/proxy.access.log combined buffer=64k flush=1s;" if logged else ""
    conf = nginx_conf(
        workdir,
        "proxy",
        f"""
    upstream origin {{ server 127.0.0.1:{ORIGIN_PORT}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{NGINX_PORT} backlog=4096;
        listen 127.0.0.1:{NGINX_H2C_PORT} http2 backlog=4096;
        {access_log}
        location ~ ^/(api/users/[^/]+|static/.+)$ {{
            limit_except GET {{ deny all; }}
            {PROXY_PASS}
        }}
        # The policies scenario: an IP allow rule and a request header rule.
        location ~ ^/api/gated/[^/]+$ {{
            limit_except GET {{ deny all; }}
            allow 127.0.0.0/8;
            deny all;
            {PROXY_PASS}
            proxy_set_header X-Gateway bench;
        }}
    }}""",
        workers,
    )
    if extra:
        with open(conf) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(extra + text)
    return conf


# === candidates ===


class Candidate:
    def __init__(self, name, port, start):
        self.name, self.port, self._start = name, port, start
        self.proc = None

    def start(self, workers, pinned, valgrind_out=None, logged=False):
        self.proc = self._start(workers, pinned, valgrind_out, logged)
        wait_port(self.port, timeout=60 if valgrind_out else 10)

    def pids(self):
        return pids_of(self.proc.pid) if self.proc else []

    def stop(self):
        stop(self.proc)
        self.proc = None


def start_nginx(workdir):
    def start(workers, pinned, valgrind_out, logged):
        conf = proxy_conf(workdir, workers, valgrind=bool(valgrind_out), logged=logged)
        cmd = ["nginx", "-c", conf, "-p", workdir]
        if valgrind_out:
            cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={valgrind_out}"] + cmd
        if pinned:
            cmd = ["taskset", "-c", "0"] + cmd
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    return start


def start_gateway(workdir):
    def start(workers, pinned, valgrind_out, logged):
        return launch_gateway(workdir, workers, pinned, valgrind_out, logged)

    return start


def launch_gateway(workdir, workers, pinned, valgrind_out, logged):
    cmd = [GATEWAY]
    if valgrind_out:
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={valgrind_out}"] + cmd
    if pinned:
        cmd = ["taskset", "-c", "0"] + cmd
    env = dict(
        os.environ,
        WORKERS=str(workers),
        BIND=f"127.0.0.1:{GATEWAY_PORT}",
        ORIGIN=f"http://127.0.0.1:{ORIGIN_PORT}",
        RUST_LOG="info" if logged else "warn",
    )
    stderr = open(os.path.join(workdir, "gateway.log"), "w") if logged else subprocess.DEVNULL
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


# === load ===

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_latency(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


def run_wrk(port, path, seconds, connections, pinned):
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}{path}"]
    if pinned:
        cmd = ["taskset", "-c", "1"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = 0
    for pattern in [r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"]:
        m = re.search(pattern, out)
        if m:
            errors += sum(int(g) for g in m.groups())
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": parse_latency(latency.get("50", "")),
        "p99": parse_latency(latency.get("99", "")),
        "errors": errors,
        "transfer": re.search(r"Transfer/sec:\s+(\S+)", out).group(1),
    }


def run_h2load(port, path, seconds, connections, pinned):
    cmd = ["h2load", "-t1", f"-c{connections}", "-m1", f"-D{seconds}", f"http://127.0.0.1:{port}{path}"]
    if pinned:
        cmd = ["taskset", "-c", "1"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
    done, succeeded = int(m.group(3)), int(m.group(4))
    codes = re.search(r"status codes: (\d+) 2xx", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
    return {
        "requests": done,
        "rps": float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1)),
        # h2load reports no percentiles: the mean stands in the p50 column.
        "p50": parse_latency(mean.group(1)) if mean else float("nan"),
        "p99": float("nan"),
        "errors": (done - succeeded) + (done - int(codes.group(1)) if codes else 0),
    }


def check_body(port, path, expected_len, wrap=lambda s: s):
    """One request by hand: status 200 and the full body length, before measuring;
    `wrap` puts TLS around the socket."""
    with wrap(socket.create_connection(("127.0.0.1", port), timeout=5)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or len(body) != expected_len:
        raise RuntimeError(f"port {port} {path}: bad response ({head[:60]!r}, {len(body)} bytes)")


def measured_run(candidate, path, seconds, connections, pinned, h2c=False):
    pids = candidate.pids() if candidate else []
    perf = None
    if pids:
        perf_out = tempfile.NamedTemporaryFile(delete=False, suffix=".perf").name
        perf = subprocess.Popen(
            ["perf", "stat", "-x,", "-o", perf_out, "-e", "raw_syscalls:sys_enter", "-p", ",".join(map(str, pids))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.2)
    cpu_before = cpu_seconds(pids)
    if h2c:
        port = NGINX_H2C_PORT if candidate.name == "nginx" else candidate.port
        result = run_h2load(port, path, seconds, connections, pinned)
    else:
        result = run_wrk(candidate.port if candidate else ORIGIN_PORT, path, seconds, connections, pinned)
    cpu_after = cpu_seconds(pids)
    result["rss_kib"] = rss_kib(pids) if pids else 0
    result["cpu_us"] = (cpu_after - cpu_before) * 1e6 / max(result["requests"], 1) if pids else float("nan")
    result["syscalls"] = float("nan")
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait()
        with open(perf_out) as f:
            for line in f:
                fields = line.strip().split(",")
                if len(fields) > 2 and fields[2] == "raw_syscalls:sys_enter" and fields[0].isdigit():
                    result["syscalls"] = int(fields[0]) / max(result["requests"], 1)
        os.unlink(perf_out)
    if result["errors"]:
        raise RuntimeError(f"{candidate.name if candidate else 'direct'}: {result['errors']} errors in the run")
    return result


def hold_idle_connections(port, count, path):
    """Opens `count` keep-alive connections, each after one full request, and returns them."""
    held = []
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(request)
        held.append(s)
    for s in held:
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
    return held


def instructions_per_request(make, path, workdir, name, h2c=False):
    """User-space instructions per request under callgrind (repeatable, unlike wall time)."""
    out = os.path.join(workdir, f"callgrind.{name}.out")
    candidate = make()
    candidate.start(1, True, valgrind_out=out)
    port = NGINX_H2C_PORT if h2c and name == "nginx" else candidate.port
    load = run_h2load if h2c else run_wrk
    try:
        time.sleep(1.0)
        load(port, path, 1, 4, True)  # warm the pool outside the window
        pid = candidate.proc.pid
        subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True, check=True)
        result = load(port, path, 5, 8, True)
        subprocess.run(["callgrind_control", "-i", "off", str(pid)], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)
    finally:
        candidate.stop()
    # Each dump holds the costs since the previous one; the window is their sum.
    total = 0
    for dump in [f for f in os.listdir(workdir) if f.startswith(f"callgrind.{name}.out")]:
        with open(os.path.join(workdir, dump)) as f:
            for line in f:
                if line.startswith("totals:"):
                    total += int(line.split()[1])
        os.unlink(os.path.join(workdir, dump))
    return total / max(result["requests"], 1), result["requests"]


# === report ===


def fmt(value, digits=1):
    if value != value:  # NaN
        return "–"
    return f"{value:,.{digits}f}"


def summarize(runs, key):
    values = [r[key] for r in runs]
    return statistics.median(values), min(values), max(values)


def report(scenario, results, instructions):
    path, description, _ = SCENARIOS[scenario]
    lines = [f"\n### {scenario}: {description} (`{path}`)\n"]
    lines.append("| candidate | requests/s | p50 ms | p99 ms | CPU µs/req | vs nginx | syscalls/req | RSS MiB | instr./req | vs nginx |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    nginx_cpu = summarize(results["nginx"], "cpu_us")[0] if "nginx" in results else float("nan")
    nginx_ir = instructions.get("nginx", float("nan"))
    for name, runs in results.items():
        rps, rps_lo, rps_hi = summarize(runs, "rps")
        cpu, cpu_lo, cpu_hi = summarize(runs, "cpu_us")
        p50 = summarize(runs, "p50")[0]
        p99 = summarize(runs, "p99")[0]
        sys_ = summarize(runs, "syscalls")[0]
        rss = summarize(runs, "rss_kib")[0] / 1024
        ir = instructions.get(name, float("nan"))
        spread = f" ({fmt(rps_lo, 0)}–{fmt(rps_hi, 0)})" if len(runs) > 1 else ""
        cpu_spread = f" ({fmt(cpu_lo)}–{fmt(cpu_hi)})" if len(runs) > 1 and cpu == cpu else ""
        lines.append(
            f"| {name} | {fmt(rps, 0)}{spread} | {fmt(p50, 2)} | {fmt(p99, 2)} | {fmt(cpu)}{cpu_spread} | "
            f"{fmt(cpu / nginx_cpu, 2) if name != 'direct' else '–'} | {fmt(sys_, 2)} | "
            f"{fmt(rss, 1) if rss else '–'} | {fmt(ir, 0)} | {fmt(ir / nginx_ir, 2) if ir == ir else '–'} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round of 3 s, small scenario, no callgrind")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--scenarios", default="small,policies,16k,1m,two-workers,logged,h2c,idle-10k")
    parser.add_argument("--no-callgrind", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.scenarios, args.no_callgrind = 1, 3, "small", True
    scenarios = [s for s in args.scenarios.split(",") if s]
    for s in scenarios:
        if s not in SCENARIOS:
            sys.exit(f"unknown scenario {s}; known: {', '.join(SCENARIOS)}")

    require_free_ports([ORIGIN_PORT, NGINX_PORT, NGINX_H2C_PORT, GATEWAY_PORT])
    # idle-10k holds 10,000 connections to one proxy at a time.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    workdir = tempfile.mkdtemp(prefix="gateway-bench-")
    os.makedirs(os.path.join(workdir, "www", "static"))
    with open(os.path.join(workdir, "www", "static", "16k.json"), "wb") as f:
        f.write(b'"' + b"x" * (16 * 1024 - 2) + b'"')
    with open(os.path.join(workdir, "www", "static", "1m.bin"), "wb") as f:
        f.write(bytes(i % 251 for i in range(1 << 20)))
    sizes = {
        "/api/users/42": len(SMALL_JSON),
        "/api/gated/42": len(SMALL_JSON),
        "/static/16k.json": 16 * 1024,
        "/static/1m.bin": 1 << 20,
    }

    origin = subprocess.Popen(
        ["taskset", "-c", "1", "nginx", "-c", origin_conf(workdir), "-p", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    report_lines = []
    try:
        wait_port(ORIGIN_PORT)
        machine = f"{os.cpu_count()} vCPU, {subprocess.run(['uname', '-r'], capture_output=True, text=True).stdout.strip()}"
        nginx_version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
        report_lines.append(
            f"Machine: {machine}; {nginx_version}; wrk -t1 -c{args.connections}, {args.seconds} s per run, "
            f"{args.rounds} round(s), medians (min–max). CPU and syscalls are the proxy's only."
        )
        for scenario in scenarios:
            path, description, pinned = SCENARIOS[scenario]
            workers = 1 if pinned else 2
            log(f"== {scenario}: {description}")
            candidates = {
                "nginx": Candidate("nginx", NGINX_PORT, start_nginx(workdir)),
                "gateway": Candidate("gateway", GATEWAY_PORT, start_gateway(workdir)),
            }
            results = {"direct": [], "nginx": [], "gateway": []}
            if scenario == "h2c":
                del results["direct"]
            for name, c in candidates.items():
                c.start(workers, pinned, logged=scenario == "logged")
                check_body(c.port, path, sizes[path])
            try:
                for round_ in range(args.rounds):
                    for name in ["direct", "nginx", "gateway"]:
                        c = candidates.get(name)
                        if scenario == "h2c" and not c:
                            continue  # the origin speaks HTTP/1.1 only
                        held = []
                        if scenario == "idle-10k" and c:
                            before = rss_kib(c.pids())
                            held = hold_idle_connections(c.port, 10_000, path)
                            after = rss_kib(c.pids())
                            per_connection = (after - before) * 1024 / 10_000
                            log(f"   {name}: 10,000 idle connections: {before / 1024:.1f} -> {after / 1024:.1f} MiB, {per_connection:,.0f} bytes each")
                            if round_ == 0:
                                report_lines.append(
                                    f"\n{scenario}: {name} holds 10,000 idle keep-alive connections in "
                                    f"{per_connection:,.0f} bytes each (RSS {before / 1024:.1f} → {after / 1024:.1f} MiB)"
                                )
                        try:
                            r = measured_run(c, path, args.seconds, args.connections, pinned, h2c=scenario == "h2c")
                        finally:
                            for s in held:
                                s.close()
                        results[name].append(r)
                        log(f"   round {round_ + 1} {name:8} {r['rps']:>10,.0f} req/s  p99 {r['p99']:.2f} ms  "
                            f"cpu {fmt(r['cpu_us'])} µs/req  syscalls {fmt(r['syscalls'], 2)}/req  rss {r['rss_kib'] / 1024:.1f} MiB")
            finally:
                for c in candidates.values():
                    c.stop()
            instructions = {}
            if not args.no_callgrind and scenario in CALLGRIND_SCENARIOS:
                for name, make in [("nginx", lambda: Candidate("nginx", NGINX_PORT, start_nginx(workdir))),
                                   ("gateway", lambda: Candidate("gateway", GATEWAY_PORT, start_gateway(workdir)))]:
                    ir, n = instructions_per_request(make, path, workdir, name, h2c=scenario == "h2c")
                    instructions[name] = ir
                    log(f"   callgrind {name}: {ir:,.0f} instructions/request over {n} requests")
            report_lines.append(report(scenario, results, instructions))
    finally:
        stop(origin)
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(report_lines))


if __name__ == "__main__":
    main()
