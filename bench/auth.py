#!/usr/bin/env python3
"""Measures what JWT authentication costs: the bench's `small` route (GET, ~150-byte
JSON) through the gateway with no policy, beside the same route behind JWT policies,
with nginx proxying the plain route as the reference, interleaved in one run. One
worker each pinned to CPU 0; wrk and the origin on CPU 1.

Scenarios (gateway unless named):
  nginx        nginx, the plain route (no JWT: the reference for every ratio below)
  plain        the plain route
  hs-hit       HS256, the same token on every request (the verified-token cache hits)
  plain-churn  the plain route, sent the hs-miss requests: a new token on every request
               (the baseline of hs-miss: the same bytes, and wrk's same Lua path)
  hs-miss      HS256, a new token on every request (a wrk Lua script cycles through
               200,000 tokens signed for the run: every request verifies)
  rs-hit       RS256 (2048-bit key), the same token: a cache hit
  es-hit       ES256 (P-256), the same token: a cache hit
  rs-verify    RS256 with `cache_size = 0`: the key in memory, the signature checked on
               every request
  es-verify    ES256 with `cache_size = 0`
  ip-limit     the plain route behind an in-process rate limit per client address
               (never reached: what counting each request costs)
  hs-hit-limit hs-hit plus an in-process rate limit per user (`jwt.sub`); the issue's
               goal is this at no more CPU than nginx's plain proxying
  redis-limit  the per-address limit with its buckets in a real redis-server (on CPU 1):
               also its Redis round trips per request (Redis's own count of script
               calls) and, after the table, p50/p99 latency beside `plain` at a fixed
               request rate
  redis-batch  the same in batched mode (`batch = 100`): leases of 100 tokens spent
               locally; round trips per request and latency as for redis-limit

Per scenario: requests/s and CPU µs per request (medians over rounds, min–max), the
ratio to `plain` (what JWT adds) and to nginx; then, under callgrind, instructions per
request for plain, hs-hit and hs-miss. Every run checks its responses: a run with
errors fails the benchmark. Run it through bench/run --auth.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the shared process, nginx and report helpers)

ROOT = bench.ROOT
GATEWAY = os.environ.get("GATEWAY_AUTH_BIN", os.path.join(ROOT, "target", "release", "bench-auth-gateway"))
SECRET = "bench-secret-" + "0123456789abcdef" * 4
MISS_TOKENS = 200_000

SCENARIOS = {
    "plain": "/api/users/42",
    "plain-churn": "/api/users/42",
    "hs-hit": "/api/hs/42",
    "hs-miss": "/api/hs/42",
    "rs-hit": "/api/rs/42",
    "es-hit": "/api/es/42",
    "rs-verify": "/api/rs-verify/42",
    "es-verify": "/api/es-verify/42",
    "ip-limit": "/api/ip-limited/42",
    "redis-limit": "/api/redis-limited/42",
    "redis-batch": "/api/redis-batched/42",
    "hs-hit-limit": "/api/hs-limited/42",
}
# Scenarios sending a new token on every request, and the unauthenticated scenario
# that is their baseline: the same requests (token and all) on the plain route.
CHURN = {"hs-miss": "plain-churn", "plain-churn": "plain-churn"}
REDIS_LATENCY = ["plain", "redis-limit", "redis-batch"]
CALLGRIND = ["plain", "plain-churn", "hs-hit", "hs-miss", "ip-limit", "hs-hit-limit"]


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(sub):
    return {"sub": sub, "iss": "https://id.bench/", "aud": "bench", "exp": int(time.time()) + 3600}


def signing_input(alg, payload):
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
    return f"{header}.{b64(json.dumps(payload, separators=(',', ':')).encode())}"


def hs256(payload):
    message = signing_input("HS256", payload)
    tag = hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).digest()
    return f"{message}.{b64(tag)}"


def der_ecdsa_to_raw(der, size=32):
    """openssl writes ECDSA signatures as DER; JWS wants r and s side by side (RFC 7518 §3.4)."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        length = der[i + 1]
        out += der[i + 2:i + 2 + length].lstrip(b"\0").rjust(size, b"\0")
        i += 2 + length
    return out


def openssl_token(alg, key, payload):
    message = signing_input(alg, payload)
    signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=message.encode(),
                               capture_output=True, check=True).stdout
    if alg == "ES256":
        signature = der_ecdsa_to_raw(signature)
    return f"{message}.{b64(signature)}"


def make_keys(workdir):
    rsa, ec = os.path.join(workdir, "rsa.key"), os.path.join(workdir, "p256.key")
    for cmd in (["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsa],
                ["openssl", "pkey", "-in", rsa, "-pubout", "-out", os.path.join(workdir, "rsa.pub.pem")],
                ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ec],
                ["openssl", "pkey", "-in", ec, "-pubout", "-out", os.path.join(workdir, "p256.pub.pem")]):
        subprocess.run(cmd, check=True, capture_output=True)
    return {"RS256": rsa, "ES256": ec}


def miss_script(workdir, path):
    """A wrk script sending GET `path`, each request with the next of MISS_TOKENS distinct
    tokens; the requests are formatted up front, so that wrk's Lua path costs little."""
    tokens = os.path.join(workdir, "tokens.txt")
    if not os.path.exists(tokens):
        with open(tokens, "w") as f:
            for i in range(MISS_TOKENS):
                f.write(hs256(claims(f"user-{i}")) + "\n")
    script = os.path.join(workdir, f"miss{path.replace('/', '-')}.lua")
    with open(script, "w") as f:
        f.write(f"""
local requests = {{}}
-- In init, not at load: wrk adds the Host field to wrk.headers only by then.
local i = 0
-- args[1]: where in the list to start, so that a run never repeats the tokens the
-- run before it sent (still cached: they would be hits).
init = function(args)
  for line in io.lines("{tokens}") do
    requests[#requests + 1] = wrk.format("GET", "{path}", {{["Authorization"] = "Bearer " .. line}})
  end
  i = tonumber(args[1]) % #requests
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
""")
    return script


def wrk_args(scenario, tokens, scripts):
    if scenario in CHURN:
        return ["-s", scripts[scenario]]
    if scenario in tokens:
        return ["-H", f"Authorization: Bearer {tokens[scenario]}"]
    return []


# The next token a churn run starts at: each run goes on where the last one stopped.
churn_offset = 0


def run_wrk(port, path, seconds, extra):
    global churn_offset
    script_args = ["--", str(churn_offset)] if "-s" in extra else []
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds}s"] + extra + [f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(cmd + script_args, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"port {port} {path}: errors in the run:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    if script_args:
        churn_offset += requests + 64  # and those in flight when wrk stopped
    return requests, float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


REDIS_PORT = 6390


def start_redis(workdir):
    proc = subprocess.Popen(["taskset", "-c", "1", "redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench.wait_port(REDIS_PORT)
    return proc


def redis_script_calls():
    """Scripts Redis has run (EVALSHA and EVAL), from its own statistics."""
    out = subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "info", "commandstats"],
                         capture_output=True, text=True, check=True).stdout
    return sum(int(m) for m in re.findall(r"cmdstat_eval(?:sha)?:calls=(\d+)", out))


def latency(port, path, seconds):
    """p50 and p99 in ms: wrk's own percentiles over a run with 8 connections, few
    enough that requests do not queue behind each other in the gateway."""
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c8", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"{path}: errors in the run:\n{out}")
    def ms(pct):
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return ms(50), ms(99)


def start_gateway(workdir, valgrind_out=None):
    cmd = ["taskset", "-c", "0", GATEWAY]
    if valgrind_out:
        cmd = ["taskset", "-c", "0", "valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={valgrind_out}", GATEWAY]
    env = dict(os.environ, WORKERS="1", BIND=f"127.0.0.1:{bench.GATEWAY_PORT}", JWT_SECRET=SECRET,
               REDIS_URL=f"redis://127.0.0.1:{REDIS_PORT}",
               ORIGIN=f"http://127.0.0.1:{bench.ORIGIN_PORT}", RUST_LOG="warn")
    proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench.wait_port(bench.GATEWAY_PORT, timeout=60 if valgrind_out else 10)
    return proc


def measure(proc, port, path, seconds, extra):
    pids = bench.pids_of(proc.pid)
    before = bench.cpu_seconds(pids)
    requests, rate = run_wrk(port, path, seconds, extra)
    return {"rate": rate, "cpu_us": (bench.cpu_seconds(pids) - before) * 1e6 / max(requests, 1),
            "requests": requests}


def instructions(workdir, scenario, tokens, scripts):
    out = os.path.join(workdir, f"callgrind.{scenario}.out")
    proc = start_gateway(workdir, valgrind_out=out)
    path, extra = SCENARIOS[scenario], wrk_args(scenario, tokens, scripts)
    try:
        time.sleep(1.0)
        run_wrk(bench.GATEWAY_PORT, path, 1, extra)  # warm the pool and the cache
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], capture_output=True, check=True)
        requests, _ = run_wrk(bench.GATEWAY_PORT, path, 4, extra)
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
    finally:
        bench.stop(proc)
    total = 0
    for dump in [f for f in os.listdir(workdir) if f.startswith(f"callgrind.{scenario}.out")]:
        with open(os.path.join(workdir, dump)) as f:
            total += sum(int(line.split()[1]) for line in f if line.startswith("totals:"))
        os.unlink(os.path.join(workdir, dump))
    return total / max(requests, 1)


def origin_conf(workdir):
    return bench.nginx_conf(workdir, "origin", f"""
    server {{
        listen 127.0.0.1:{bench.ORIGIN_PORT} backlog=4096;
        location /api/ {{ default_type application/json; return 200 '{bench.SMALL_JSON}'; }}
    }}""")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--no-callgrind", action="store_true")
    args = parser.parse_args()
    bench.require_free_ports([bench.ORIGIN_PORT, bench.NGINX_PORT, bench.GATEWAY_PORT])
    workdir = tempfile.mkdtemp(prefix="gateway-bench-auth-")
    keys = make_keys(workdir)
    tokens = {
        "hs-hit": hs256(claims("user-1")),
        "rs-hit": openssl_token("RS256", keys["RS256"], claims("user-1")),
        "es-hit": openssl_token("ES256", keys["ES256"], claims("user-1")),
    }
    tokens["rs-verify"], tokens["es-verify"] = tokens["rs-hit"], tokens["es-hit"]
    tokens["hs-hit-limit"] = tokens["hs-hit"]
    scripts = {name: miss_script(workdir, SCENARIOS[name]) for name in CHURN}
    origin = subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", origin_conf(workdir), "-p", workdir],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results, counts, latencies = {}, {}, {}
    redis = None
    try:
        bench.wait_port(bench.ORIGIN_PORT)
        redis = start_redis(workdir)
        for round_ in range(args.rounds):
            nginx = bench.Candidate("nginx", bench.NGINX_PORT, bench.start_nginx(workdir))
            nginx.start(1, True)
            try:
                r = measure(nginx.proc, bench.NGINX_PORT, SCENARIOS["plain"], args.seconds, [])
            finally:
                nginx.stop()
            results.setdefault("nginx", []).append(r)
            bench.log(f"   round {round_ + 1} nginx      {r}")
            proc = start_gateway(workdir)
            try:
                for scenario, path in SCENARIOS.items():
                    bench.check_body(bench.GATEWAY_PORT, SCENARIOS["plain"], len(bench.SMALL_JSON))
                    calls = redis_script_calls()
                    r = measure(proc, bench.GATEWAY_PORT, path, args.seconds, wrk_args(scenario, tokens, scripts))
                    r["redis_per_request"] = (redis_script_calls() - calls) / max(r["requests"], 1)
                    results.setdefault(scenario, []).append(r)
                    bench.log(f"   round {round_ + 1} {scenario:10} {r}")
            finally:
                bench.stop(proc)
        proc = start_gateway(workdir)
        try:
            for _ in range(args.rounds):
                for scenario in REDIS_LATENCY:
                    latencies.setdefault(scenario, []).append(
                        latency(bench.GATEWAY_PORT, SCENARIOS[scenario], args.seconds))
        finally:
            bench.stop(proc)
        if not args.no_callgrind:
            for scenario in CALLGRIND:
                counts[scenario] = instructions(workdir, scenario, tokens, scripts)
                bench.log(f"   callgrind {scenario:10} {counts[scenario]:,.0f} instructions/request")
    finally:
        bench.stop(origin)
        if redis:
            bench.stop(redis)
        shutil.rmtree(workdir, ignore_errors=True)

    med = lambda name, key: statistics.median(r[key] for r in results[name])  # noqa: E731
    nginx_cpu = med("nginx", "cpu_us")
    nginx_version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    print(f"JWT and rate limits: one worker each on CPU 0; {nginx_version}; {args.rounds} round(s) of {args.seconds} s, medians.")
    print("`vs base`: against the unauthenticated route driven the same way (`plain`, or")
    print("`plain-churn` for scenarios with a new token per request).\n")
    print("| scenario | requests/s | CPU µs/req (min–max) | vs base | vs nginx | instr./req | vs base |")
    print("|---|---|---|---|---|---|---|")
    for name in ["nginx"] + list(SCENARIOS):
        runs = results[name]
        base = CHURN.get(name, "plain")
        lo, hi = min(r["cpu_us"] for r in runs), max(r["cpu_us"] for r in runs)
        cpu = med(name, "cpu_us")
        ir = counts.get(name)
        ir_text = f"{ir:,.0f} | {ir / counts[base]:.3f}" if ir and base in counts else "– | –"
        vs_base = f"{cpu / med(base, 'cpu_us'):.3f}" if name != "nginx" else "–"
        print(f"| {name} | {med(name, 'rate'):,.0f} | {cpu:.2f} ({lo:.2f}–{hi:.2f}) | {vs_base} | "
              f"{cpu / nginx_cpu:.2f} | {ir_text} |")
    for name in REDIS_LATENCY[1:]:
        trips = med(name, "redis_per_request")
        print(f"\n{name}: {trips:.4f} Redis round trips per request (script calls, Redis's own count).")
    pct = lambda name, i: statistics.median(run[i] for run in latencies[name])  # noqa: E731
    print("Latency at 8 connections (medians of the rounds' wrk percentiles):")
    for name in REDIS_LATENCY:
        print(f"  {name:12} p50 {pct(name, 0):.3f} ms  p99 {pct(name, 1):.3f} ms")
    for name in REDIS_LATENCY[1:]:
        print(f"  added by {name}: p50 +{pct(name, 0) - pct('plain', 0):.3f} ms, "
              f"p99 +{pct(name, 1) - pct('plain', 1):.3f} ms")

if __name__ == "__main__":
    main()
