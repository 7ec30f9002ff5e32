#!/usr/bin/env python3
"""What aggregation costs: a three-call aggregate beside one proxied call.

One nginx origin on CPU 1 serves three JSON documents (users, orders, recs) at 1 KB and
100 KB; the gateway (one worker, CPU 0) serves:

  single  one document proxied as it is (streamed, never parsed)
  one     the same document through an aggregate of one call (parsed, written again)
  three   three documents, three concurrent calls, merged under their keys
  shaped  the same three, each shaped (fields, target, deny): a slim payload

Per scenario and size: requests/s and gateway CPU µs per request at 64 connections
(medians over rounds); p50/p99 at 1 connection, which is the latency a request adds
(at 8 connections the one worker is busy and p50 is mostly queueing, about 8 × the
CPU per request; it is shown too). The issue's goals: `three` adds at most 0.3 ms at
p50 over `single`, and costs at most 3× its CPU. `one` minus `single` is
what parsing and writing one document costs. Run it through bench/run --aggregate.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the shared process and nginx helpers)

ROOT = bench.ROOT
GATEWAY = os.environ.get("GATEWAY_AGGREGATE_BIN",
                         os.path.join(ROOT, "target", "release", "bench-aggregate-gateway"))
SCENARIOS = ["single", "one", "three", "shaped"]
SIZES = {"1k": 1_000, "100k": 100_000}


def document(kind, size):
    """A JSON document of about `size` bytes: a list of items with a few fields."""
    items, i = [], 0
    while len(json.dumps({"kind": kind, "items": items})) < size:
        items.append({"id": i, "name": f"{kind}-{i}", "price": i * 3 % 97,
                      "tags": ["a", "b"], "text": "lorem ipsum dolor sit amet"})
        i += 1
    return json.dumps({"kind": kind, "items": items})


def origin_conf(workdir):
    for kind in ["users", "orders", "recs"]:
        os.makedirs(os.path.join(workdir, "www", kind), exist_ok=True)
        for name, size in SIZES.items():
            with open(os.path.join(workdir, "www", kind, f"{name}.json"), "w") as f:
                f.write(document(kind, size))
    return bench.nginx_conf(workdir, "origin", f"""
    server {{
        listen 127.0.0.1:{bench.ORIGIN_PORT} backlog=4096;
        default_type application/json;
        root {workdir}/www;
    }}""")


def start_gateway(workdir):
    env = dict(os.environ, WORKERS="1", BIND=f"127.0.0.1:{bench.GATEWAY_PORT}",
               ORIGIN=f"http://127.0.0.1:{bench.ORIGIN_PORT}", RUST_LOG="warn")
    proc = subprocess.Popen(["taskset", "-c", "0", GATEWAY], env=env, cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench.wait_port(bench.GATEWAY_PORT)
    return proc


def wrk(path, seconds, connections):
    r = bench.run_wrk(bench.GATEWAY_PORT, path, seconds, connections, pinned=True)
    if r["errors"]:
        raise RuntimeError(f"{path}: {r['errors']} errors in the run")
    return r["requests"], r["rps"], r["p50"], r["p99"]


def check(path):
    """The answer is whole JSON with no member missing: a run of errors measures nothing."""
    out = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{bench.GATEWAY_PORT}{path}"],
                         capture_output=True, check=True).stdout
    body = json.loads(out)
    if "_errors" in body:
        raise RuntimeError(f"{path}: a call failed: {body['_errors']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()
    bench.require_free_ports([bench.ORIGIN_PORT, bench.GATEWAY_PORT])
    workdir = tempfile.mkdtemp(prefix="gateway-bench-aggregate-")
    origin = subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", origin_conf(workdir), "-p", workdir],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu, rate, p50, p99, loaded = {}, {}, {}, {}, {}
    try:
        bench.wait_port(bench.ORIGIN_PORT)
        proc = start_gateway(workdir)
        try:
            pids = bench.pids_of(proc.pid)
            for size in SIZES:
                for scenario in SCENARIOS:
                    check(f"/{scenario}/{size}")
            for round_ in range(args.rounds):
                for size in SIZES:
                    for scenario in SCENARIOS:
                        path = f"/{scenario}/{size}"
                        before = bench.cpu_seconds(pids)
                        requests, r, _, _ = wrk(path, args.seconds, 64)
                        used = (bench.cpu_seconds(pids) - before) * 1e6 / max(requests, 1)
                        cpu.setdefault((scenario, size), []).append(used)
                        rate.setdefault((scenario, size), []).append(r)
                        _, _, l50, l99 = wrk(path, args.seconds, 1)
                        p50.setdefault((scenario, size), []).append(l50)
                        p99.setdefault((scenario, size), []).append(l99)
                        _, _, b50, _ = wrk(path, args.seconds, 8)
                        loaded.setdefault((scenario, size), []).append(b50)
                        bench.log(f"   round {round_ + 1} {scenario:7} {size:5} {r:9.0f}/s {used:7.2f} µs "
                                  f"p50 {l50:.3f} p99 {l99:.3f} ms, p50 at 8 {b50:.3f} ms")
        finally:
            bench.stop(proc)
    finally:
        bench.stop(origin)
        shutil.rmtree(workdir, ignore_errors=True)

    med = lambda table, key: statistics.median(table[key])  # noqa: E731
    print(f"Aggregation: one gateway worker on CPU 0, nginx origin and wrk on CPU 1; "
          f"{args.rounds} round(s) of {args.seconds} s, medians.\n")
    print("| scenario | size | requests/s | CPU µs/req | vs single | p50 ms | p99 ms | p50 vs single "
          "| p50 at 8 conns ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in SIZES:
        base_cpu, base_p50 = med(cpu, ("single", size)), med(p50, ("single", size))
        for scenario in SCENARIOS:
            key = (scenario, size)
            print(f"| {scenario} | {size} | {med(rate, key):,.0f} | {med(cpu, key):.2f} | "
                  f"{med(cpu, key) / base_cpu:.2f} | {med(p50, key):.3f} | {med(p99, key):.3f} | "
                  f"{med(p50, key) - base_p50:+.3f} | {med(loaded, key):.3f} |")
    print()
    for size in SIZES:
        parse = med(cpu, ("one", size)) - med(cpu, ("single", size))
        three = med(cpu, ("three", size)) / med(cpu, ("single", size))
        added = med(p50, ("three", size)) - med(p50, ("single", size))
        print(f"{size}: parsing and writing one document costs {parse:.2f} µs of CPU beyond proxying it; "
              f"three calls cost {three:.2f}× one proxied request (goal ≤ 3) and add "
              f"{added:+.3f} ms at p50 (goal ≤ 0.3).")


if __name__ == "__main__":
    main()
