#!/usr/bin/env python3
"""The public HTTP caching tests (http-tests/cache-tests, cache-tests.fyi), run twice:
straight against their own origin server, and through the gateway in front of it
(`bench-passthrough-gateway`, built from bench/passthrough.toml: one catch-all route).

The gateway has no cache, so most tests of a cache's behaviour fail both ways; what
this checks is that the gateway changes nothing a cache or a client relies on. Every
test that passes straight against the origin must pass through the gateway; the run
fails otherwise. Other differences (both fail, differently) are listed with the reason
each has.

Run it through `bench/run --cache-tests`, which installs Node.js and builds the gateway.
The suite comes from the npm registry (`http-cache-tests`, pinned below).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

SUITE = "http-cache-tests@0.4.5"
ORIGIN_PORT = 28091
GATEWAY_PORT = 28090
GATEWAY = os.environ.get(
    "GATEWAY_PASSTHROUGH_BIN",
    os.path.join(bench.ROOT, "target", "release", "bench-passthrough-gateway"),
)

# Where the two runs may differ though both fail, by the start of the gateway run's
# message, and why.
EXPLAINED = [
    ("Response 2 status is 502, not 200",
     "the origin's status 999 (`304 Not Generated`) is a 502: RFC 9110 §15 reads a status outside 100-599 as a server error"),
    ("Response 1 status is 502, not 200",
     "a `Transfer-Encoding` other than chunked in a response is a 502, as in nginx: the gateway frames what it sends"),
    ("Response 2 does not come from cache",
     "the origin closes the connection: a direct client fails, the gateway answers (neither caches)"),
    ("Response 2 comes from cache",
     "the origin closes the connection: a direct client fails, the gateway answers 502 itself, which the test reads as not the origin's"),
    ('Response 2 header Expires is "null"', "the same failure; the expected date is each run's"),
]


def script(suite_dir, name):
    """Where the package keeps its server or client: releases have moved them."""
    for path in [f"test-engine/{name}", name]:
        if os.path.exists(os.path.join(suite_dir, path)):
            return path
    sys.exit(f"{SUITE} has no {name}")


def run_suite(suite_dir, base):
    env = dict(os.environ, npm_config_base=base, npm_config_id="", npm_package_config_id="")
    out = subprocess.run(
        ["node", "--no-warnings", script(suite_dir, "cli.mjs")],
        cwd=suite_dir, env=env, capture_output=True, text=True, timeout=900, check=True,
    ).stdout
    return json.loads(out)


def verdict(result):
    return "pass" if result is True else f"{result[0]}: {result[1]}"


def main():
    bench.require_free_ports([ORIGIN_PORT, GATEWAY_PORT])
    workdir = tempfile.mkdtemp(prefix="gateway-cache-tests-")
    origin = gateway = None
    try:
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--omit=dev", "--prefix", workdir, SUITE],
            check=True, capture_output=True, timeout=600,
        )
        suite_dir = os.path.join(workdir, "node_modules", "http-cache-tests")
        origin = subprocess.Popen(
            ["node", script(suite_dir, "server/server.mjs")],
            cwd=suite_dir,
            env=dict(os.environ, npm_config_protocol="http", npm_config_port=str(ORIGIN_PORT),
                     npm_config_pidfile=os.path.join(workdir, "server.pid")),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        bench.wait_port(ORIGIN_PORT)
        gateway = subprocess.Popen(
            [GATEWAY],
            env=dict(os.environ, BIND=f"127.0.0.1:{GATEWAY_PORT}",
                     ORIGIN=f"http://127.0.0.1:{ORIGIN_PORT}", RUST_LOG="warn"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        bench.wait_port(GATEWAY_PORT)
        direct = run_suite(suite_dir, f"http://127.0.0.1:{ORIGIN_PORT}")
        through = run_suite(suite_dir, f"http://127.0.0.1:{GATEWAY_PORT}")
    finally:
        bench.stop(gateway)
        bench.stop(origin)
        shutil.rmtree(workdir, ignore_errors=True)

    passed = {name: sum(r is True for r in run.values()) for name, run in
              [("direct", direct), ("gateway", through)]}
    print(f"{SUITE}: {len(direct)} tests; passed straight against the origin: {passed['direct']}, "
          f"through the gateway: {passed['gateway']}")
    broken, differ = [], []
    for test, result in sorted(direct.items()):
        other = through.get(test)
        if other == result:
            continue
        if result is True:
            broken.append((test, verdict(other)))
        elif other is not True:
            reason = next((why for start, why in EXPLAINED if other[1].startswith(start)), "unexplained")
            differ.append((test, verdict(result), verdict(other), reason))
    if differ:
        print("\n| test | straight | through the gateway | why |\n|---|---|---|---|")
        for row in differ:
            print("| " + " | ".join(row) + " |")
    if broken:
        print("\nPassed straight against the origin, failed through the gateway:")
        for test, why in broken:
            print(f"  {test}: {why}")
        sys.exit(1)
    print("\nNo test that passes straight against the origin fails through the gateway.")


if __name__ == "__main__":
    main()
