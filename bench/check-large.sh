#!/usr/bin/env bash
# `gateway check` on a generated gateway.toml of 2,000 routes and 200 upstreams (with
# hosts, methods, parameters, rewrites and 100 route tests): wall time per run.
# Usage: bench/check-large.sh [ROUTES] [UPSTREAMS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
routes=${1:-2000}
upstreams=${2:-200}
runs=${3:-20}

cargo build --release --quiet -p gateway-build --bin gateway
gateway=target/release/gateway
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
config="$dir/gateway.toml"

{
    printf '[gateway]\nname = "large"\n\n[listeners.public]\nbind = "0.0.0.0:8080"\n\n'
    printf '[listeners.internal]\nbind = "0.0.0.0:8081"\n\n'
    for ((u = 0; u < upstreams; u++)); do
        printf '[upstreams.svc%d]\ntargets = ["http://127.0.0.1:%d", "${env:SVC%d_B:-http://127.0.0.1:%d}"]\n' \
            "$u" $((10000 + u)) "$u" $((20000 + u))
        printf 'timeouts = { connect = "1s", response = "5s" }\n\n'
    done
    for ((r = 0; r < routes; r++)); do
        u=$((r % upstreams))
        case $((r % 4)) in
            0) printf '[[routes]]\nname = "r%d"\npath = "/v1/svc%d/items%d/{id}"\nmethods = ["GET"]\nupstream = "svc%d"\n\n' "$r" "$u" "$r" "$u" ;;
            1) printf '[[routes]]\nname = "r%d"\npath = "/v1/svc%d/items%d/{id}"\nmethods = ["POST", "PUT"]\nupstream = "svc%d"\nrewrite = "/items/{id}"\n\n' "$r" "$u" $((r - 1)) "$u" ;;
            2) printf '[[routes]]\nname = "r%d"\nhost = "h%d.example.com"\npath = "/api/{*rest}"\nupstream = "svc%d"\nstrip_prefix = "/api"\n\n' "$r" "$r" "$u" ;;
            3) printf '[[routes]]\nname = "r%d"\npath = "/static%d/{*path}"\nlisteners = ["internal"]\nupstream = "svc%d"\n\n' "$r" "$r" "$u" ;;
        esac
    done
    for ((t = 0; t < 100; t++)); do
        r=$((t * 4))
        printf '[[tests]]\nrequest = "GET /v1/svc%d/items%d/7"\nexpect = { route = "r%d", upstream = "svc%d" }\n\n' \
            $((r % upstreams)) "$r" "$r" $((r % upstreams))
    done
} > "$config"

echo "config: $routes routes, $upstreams upstreams, 100 route tests, $(wc -c < "$config") bytes"
"$gateway" check "$config"
times=()
for ((i = 0; i < runs; i++)); do
    start=$(date +%s%N)
    "$gateway" check "$config" 2>/dev/null
    end=$(date +%s%N)
    times+=($(((end - start) / 1000)))
done
sorted=($(printf '%s\n' "${times[@]}" | sort -n))
echo "gateway check wall time over $runs runs: min $((sorted[0] / 1000)).$(((sorted[0] % 1000) / 100)) ms," \
    "median $((sorted[runs / 2] / 1000)).$(((sorted[runs / 2] % 1000) / 100)) ms," \
    "max $((sorted[runs - 1] / 1000)).$(((sorted[runs - 1] % 1000) / 100)) ms (goal: well under 100 ms)"
