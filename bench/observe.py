#!/usr/bin/env python3
"""What observability costs: the small scenario (bench.py's `small`, one worker on CPU 0,
wrk and the nginx origin on CPU 1) with each part on, against the same job with all of
it off, in one run. Every variant routes observe-routes.toml; they differ only in what
they observe.

  off           bench-observe-off-gateway: no admin listener, no tracing, no access log
  metrics       bench-observe-metrics-gateway: the admin listener, so metrics counted
  trace-0pct    bench-observe-gateway: metrics, and tracing at ratio 0 (every request
                gets its ids and an upstream `traceparent`; none is recorded)
  trace-1pct    the same at 1%: what the issue's goal is about (metrics plus 1% tracing)
  trace-100pct  every request recorded: a server and a client span each, exported
  json-log      trace-0pct with the JSON access log written to a file

(`%` is not in the names: callgrind reads it in its output file's name.)

The spans go to the origin nginx (`POST /v1/traces` answered 200), so that export costs
what it would against a collector.

Per variant: requests/s, p50/p99, gateway CPU µs per request (medians over rounds,
interleaved), and user-space instructions per request under callgrind, exporter thread
included. At the end, the spans the gateway exported and dropped at 100%.
Run it through bench/run --observe.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the shared process and nginx helpers)

ROOT = bench.ROOT
RELEASE = os.path.join(ROOT, "target", "release")
OFF = os.path.join(RELEASE, "bench-observe-off-gateway")
METRICS = os.path.join(RELEASE, "bench-observe-metrics-gateway")
OBSERVE = os.path.join(RELEASE, "bench-observe-gateway")
ADMIN_PORT = 28090
PATH = "/api/users/42"

# name: (binary, TRACE_RATIO, access log on)
VARIANTS = {
    "off": (OFF, None, False),
    # GATEWAY_BEFORE_BIN: bench-observe-off-gateway built from an earlier commit, to see
    # what the code paths cost when they are off.
    **({"before": (os.environ["GATEWAY_BEFORE_BIN"], None, False)}
       if os.environ.get("GATEWAY_BEFORE_BIN") else {}),
    "metrics": (METRICS, None, False),
    "trace-0pct": (OBSERVE, "0", False),
    "trace-1pct": (OBSERVE, "0.01", False),
    "trace-100pct": (OBSERVE, "1", False),
    "json-log": (OBSERVE, "0", True),
}


def origin_conf(workdir):
    return bench.nginx_conf(workdir, "origin", f"""
    server {{
        listen 127.0.0.1:{bench.ORIGIN_PORT} backlog=4096;
        client_max_body_size 16m;
        location /api/users/ {{ default_type application/json; return 200 '{bench.SMALL_JSON}'; }}
        location = /v1/traces {{ return 200; }}
    }}""")


def candidate(workdir, name):
    binary, ratio, logged = VARIANTS[name]

    def start(workers, pinned, valgrind_out, _logged):
        cmd = [binary]
        if valgrind_out:
            cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={valgrind_out}"] + cmd
        if pinned:
            cmd = ["taskset", "-c", "0"] + cmd
        env = dict(os.environ, WORKERS=str(workers), BIND=f"127.0.0.1:{bench.GATEWAY_PORT}",
                   ORIGIN=f"http://127.0.0.1:{bench.ORIGIN_PORT}",
                   ADMIN_BIND=f"127.0.0.1:{ADMIN_PORT}",
                   ACCESS_LOG=os.path.join(workdir, "access.json"),
                   RUST_LOG="info" if logged else "warn")
        if ratio is not None:
            env["TRACE_RATIO"] = ratio
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(workdir, f"{name}.log"), "w"))

    return bench.Candidate(name, bench.GATEWAY_PORT, start)


def spans():
    """(exported, dropped) from the admin listener's metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{ADMIN_PORT}/metrics", timeout=5).read().decode()
    exported = sum(float(v) for v in re.findall(r"^gateway_trace_spans_exported_total (\S+)$", text, re.M))
    dropped = sum(float(v) for v in re.findall(r"^gateway_trace_spans_dropped_total\{[^}]*\} (\S+)$", text, re.M))
    return int(exported), int(dropped)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--no-callgrind", action="store_true")
    args = parser.parse_args()
    bench.require_free_ports([bench.ORIGIN_PORT, bench.GATEWAY_PORT, ADMIN_PORT])
    workdir = tempfile.mkdtemp(prefix="gateway-observe-")
    origin = subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", origin_conf(workdir), "-p", workdir],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {name: [] for name in VARIANTS}
    instructions = {}
    traced = None
    try:
        bench.wait_port(bench.ORIGIN_PORT)
        for round_ in range(args.rounds):
            for name in VARIANTS:
                c = candidate(workdir, name)
                c.start(1, True)
                try:
                    bench.check_body(bench.GATEWAY_PORT, PATH, len(bench.SMALL_JSON))
                    bench.run_wrk(bench.GATEWAY_PORT, PATH, 1, args.connections, True)  # warm up
                    run = bench.measured_run(c, PATH, args.seconds, args.connections, True)
                    results[name].append(run)
                    if name == "trace-100pct" and round_ == args.rounds - 1:
                        traced = (spans(), run["requests"])
                finally:
                    c.stop()
                bench.log(f"round {round_ + 1} {name}: {run['rps']:,.0f} req/s, {run['cpu_us']:.2f} µs/req")
        if not args.no_callgrind and shutil.which("valgrind"):
            for name in VARIANTS:
                instructions[name], _ = bench.instructions_per_request(
                    lambda name=name: candidate(workdir, name), PATH, workdir, name)
                bench.log(f"callgrind {name}: {instructions[name]:,.0f} instructions/request")
    finally:
        bench.stop(origin)
        shutil.rmtree(workdir, ignore_errors=True)

    off_cpu = bench.summarize(results["off"], "cpu_us")[0]
    off_ir = instructions.get("off", float("nan"))
    print(f"\n### observability on the small scenario ({args.rounds} rounds of {args.seconds} s, "
          f"{args.connections} connections)\n")
    print("| variant | requests/s | p50 ms | p99 ms | CPU µs/req | vs off | instr./req | vs off |")
    print("|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        rps = bench.summarize(runs, "rps")[0]
        cpu, lo, hi = bench.summarize(runs, "cpu_us")
        ir = instructions.get(name, float("nan"))
        ir_vs_off = f"{ir / off_ir - 1:+.1%}" if ir == ir and off_ir == off_ir else "–"
        print(f"| {name} | {bench.fmt(rps, 0)} | {bench.fmt(bench.summarize(runs, 'p50')[0], 2)} | "
              f"{bench.fmt(bench.summarize(runs, 'p99')[0], 2)} | {bench.fmt(cpu, 2)} "
              f"({bench.fmt(lo, 2)}–{bench.fmt(hi, 2)}) | {cpu / off_cpu - 1:+.1%} | "
              f"{bench.fmt(ir, 0)} | {ir_vs_off} |")
    if traced:
        (exported, dropped), requests = traced
        print(f"\ntrace-100pct, last round: {requests:,} requests, {exported:,} spans exported, "
              f"{dropped:,} dropped")


if __name__ == "__main__":
    main()
