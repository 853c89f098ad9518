#!/usr/bin/env bash
# bench/run.sh — the gateway benchmark, in one run, on loopback:
#   P. the headline, production shape: whizard (`server.threads` = cores), haproxy (`nbthread` =
#      cores) and nginx (`worker_processes auto`), unpinned, each doing the gateway's read job, in
#      four modes — plain HTTP/1.1 (wrk), HTTP/1.1 over TLS (wrk), HTTP/2 over TLS (h2load) and
#      plain HTTP/1.1 pipelined (h2load --h1) —
#      measured in interleaved rounds, with direct to the stub as the reference; remote-write
#      bodies over HTTPS and /api/v1/query over HTTP/2 through whizard;
#   the pinned one-core phases (secondary tables):
#   1. read pass-through of a small JSON answer: direct to the upstream stub, through whizard
#      (Basic Auth + tenant header), through nginx and through vmauth doing the same job —
#      saturated and paced ("moderate") load: requests/s, p50/p99/p99.9, CPU per request of the
#      process under test;
#   2. /api/v1/query with enforcement through whizard vs direct to a real Prometheus;
#   3. remote write: codec throughput per core (snappy round trip, pass-through, v1 and v2
#      injection) and end-to-end write rate through whizard to the stub;
#   4. microbenchmarks (cached Basic Auth, cached and uncached JWT check, PromQL rewrite of
#      dashboard queries, match[]);
#      `--criterion` also runs the criterion benches in benches/;
#   5. gateway (and nginx, vmauth) RSS at idle and with 1,000 and 10,000 idle keep-alive connections.
# Prints a table and writes bench/results/latest.{json,md,png} (or to $BENCH_OUT).
#
# Usage: bench/run.sh [--quick] [--criterion] [--profile] [--production-only]
#   --quick      5 s per load phase instead of 12 (smoke run)
#   --production-only  only the production-shape phase (P), no pinned phases or microbenchmarks
#   --criterion  also run `cargo bench` (needs criterion in Cargo.toml [dev-dependencies])
#   --profile    also record the gateway with perf during a pass-through phase ($BENCH_OUT/profile.txt)
# Environment: BENCH_DURATION (s per wrk phase), BENCH_ROUNDS (default 3, --quick 1: the read
#   phases of parts P and 1 are split into this many rounds that alternate the targets,
#   so a machine that drifts during the run affects every target alike), BENCH_CONNECTIONS (default 64),
#   BENCH_GATEWAY_THREADS (default 1), BENCH_PIN (1: proxy on CPU 0, load+upstream on CPU 1),
#   CARGO_TARGET_DIR (default ./target), BENCH_NO_BUILD=1 (use the binaries already built),
#   KEEP_WORK=1 (keep the temporary directory with raw wrk output and logs),
#   BENCH_NICE (priority of everything measured; default -10 as root, so builds running beside
#   the benchmark disturb it less), BENCH_OUT (where latest.{json,md,png} go; default bench/results).
# Production phase: BENCH_PROD_THREADS (default nproc: whizard threads, haproxy nbthread, stub
#   threads; nginx uses `worker_processes auto`), BENCH_PROD_CONNECTIONS (default 32),
#   BENCH_PROD_STREAMS (h2load -m, default 8), BENCH_HAPROXY_HASH (sha512 (default, `openssl passwd -6`),
#   sha256 (`-5`) or md5 (`-1`): the crypt(3) hash of haproxy's hashed frontend).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
cd "$ROOT"

QUICK=0 CRITERION=0 PROFILE=0 PROD_ONLY=0
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    --production-only) PROD_ONLY=1 ;;
    --criterion) CRITERION=1 ;;
    --profile) PROFILE=1 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
    *) echo "unknown argument $a" >&2; exit 2 ;;
  esac
done
DURATION="${BENCH_DURATION:-$([[ $QUICK == 1 ]] && echo 5 || echo 12)}"
WRITE_DURATION="$(( DURATION * 2 / 3 > 4 ? DURATION * 2 / 3 : 4 ))"
ROUNDS="${BENCH_ROUNDS:-$([[ $QUICK == 1 ]] && echo 1 || echo 3)}"
ROUND_DURATION="$(( DURATION / ROUNDS > 2 ? DURATION / ROUNDS : 2 ))"
CONNS="${BENCH_CONNECTIONS:-64}"
GW_THREADS="${BENCH_GATEWAY_THREADS:-1}"
MICRO_SECS="$([[ $QUICK == 1 ]] && echo 0.3 || echo 1.0)"
PROD_THREADS="${BENCH_PROD_THREADS:-$(nproc)}"
PROD_CONNS="${BENCH_PROD_CONNECTIONS:-32}"
PROD_STREAMS="${BENCH_PROD_STREAMS:-8}"
HAPROXY_HASH="${BENCH_HAPROXY_HASH:-sha512}"
case "$HAPROXY_HASH" in
  sha512) HAPROXY_PASSWD_FLAG=-6 HAPROXY_HASH_KIND='SHA-512 crypt ($6$, 5000 rounds)' ;;
  sha256) HAPROXY_PASSWD_FLAG=-5 HAPROXY_HASH_KIND='SHA-256 crypt ($5$, 5000 rounds)' ;;
  md5)    HAPROXY_PASSWD_FLAG=-1 HAPROXY_HASH_KIND='MD5 crypt ($1$, 1000 rounds)' ;;
  *) echo "BENCH_HAPROXY_HASH must be sha512, sha256 or md5" >&2; exit 2 ;;
esac
OUT="${BENCH_OUT:-$BENCH/results}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
REL="$CARGO_TARGET_DIR/release"

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

# ---------------------------------------------------------------- dependencies
need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v htpasswd >/dev/null || need_apt+=(apache2-utils)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v make >/dev/null || need_apt+=(make)
command -v curl >/dev/null || need_apt+=(curl)
command -v taskset >/dev/null || need_apt+=(util-linux)
command -v vmauth >/dev/null || need_apt+=(victoria-metrics)
command -v haproxy >/dev/null || need_apt+=(haproxy)
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
command -v openssl >/dev/null || need_apt+=(openssl)
if ((${#need_apt[@]})); then
  say "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep the packages' own services (nginx, haproxy, prometheus, victoria-metrics) from starting.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
if ! python3 -c 'import matplotlib' 2>/dev/null; then
  say "installing matplotlib (PyPI) for the chart"
  python3 -m pip install -q matplotlib || echo "matplotlib unavailable: no chart" >&2
fi

# ---------------------------------------------------------------- build
if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
  say "building release binaries (target dir $CARGO_TARGET_DIR)"
  cargo build --release --quiet --bin whizard
  cargo build --release --quiet --manifest-path "$BENCH/upstream/Cargo.toml"
  # Same dependency versions as the gateway, so the shared target dir builds them once.
  cp "$ROOT/Cargo.lock" "$BENCH/tools/Cargo.lock"
  cargo build --release --quiet --manifest-path "$BENCH/tools/Cargo.toml"
fi
WHIZARD="$REL/whizard" STUB="$REL/bench-upstream" TOOL="$REL/whizard-benchtool"

# ---------------------------------------------------------------- workspace & cleanup
WORK="$(mktemp -d /tmp/whizard-bench.XXXXXX)"
RAW="$WORK/raw"; mkdir -p "$RAW" "$WORK/nginx-tmp"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n "${KEEP_WORK:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [[ "${BENCH_PIN:-1}" == 1 && "$(nproc)" -ge 2 ]]; then
  SUT_CPU=(taskset -c 0) LOAD_CPU=(taskset -c 1)
else
  SUT_CPU=() LOAD_CPU=()
fi
# On a shared machine, run the measured processes ahead of other work (builds); every process
# under test, the load generator and the upstreams get the same priority.
NICE="${BENCH_NICE:-$([[ $(id -u) == 0 ]] && echo -10 || echo 0)}"
if [[ "$NICE" != 0 ]]; then SUT_CPU=(nice -n "$NICE" "${SUT_CPU[@]}") LOAD_CPU=(nice -n "$NICE" "${LOAD_CPU[@]}"); fi
# The production-shape phase pins nothing: every process there (proxies, stub, load generator,
# Prometheus) runs with the same priority wherever the kernel puts it.
PROD_RUN=(); if [[ "$NICE" != 0 ]]; then PROD_RUN=(nice -n "$NICE"); fi
LOADGEN=("${LOAD_CPU[@]}")   # how run_wrk and run_h2load start the load generator

# Ports: a block chosen from the PID so two runs do not collide.
BASE=$(( 20000 + ($$ % 200) * 50 ))
UP_PORT=$((BASE + 1)) GW_PORT=$((BASE + 2)) GW_METRICS=$((BASE + 3))
GWQ_PORT=$((BASE + 4)) GWQ_METRICS=$((BASE + 5)) GWP_PORT=$((BASE + 6)) GWP_METRICS=$((BASE + 7))
NGINX_PORT=$((BASE + 8)) NGINX_APR1_PORT=$((BASE + 9)) PROM_PORT=$((BASE + 10)) VMAUTH_PORT=$((BASE + 11))
RELAY_PORT=$((BASE + 12))
# The production-shape phase's own stub, proxies and Prometheus.
PUP_PORT=$((BASE + 13)) PGW_PORT=$((BASE + 14)) PGW_TLS=$((BASE + 15)) PGW_METRICS=$((BASE + 16))
PGWQ_PORT=$((BASE + 17)) PGWQ_TLS=$((BASE + 18)) PGWQ_METRICS=$((BASE + 19))
HAP_PORT=$((BASE + 20)) HAP_TLS=$((BASE + 21)) HAPP_PORT=$((BASE + 22)) HAPP_TLS=$((BASE + 23))
NGP_PORT=$((BASE + 24)) NGP_TLS=$((BASE + 25)) PPROM_PORT=$((BASE + 26))
PGWP_PORT=$((BASE + 27)) PGWP_TLS=$((BASE + 28)) PGWP_METRICS=$((BASE + 29))

wait_http() { # url what
  for _ in $(seq 1 150); do curl -fsSk -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done
  echo "timed out waiting for $2 ($1)" >&2; exit 1
}
cpu_ticks() { # pid... → "utime stime" of the processes (all threads), each summed
  local u=0 s=0 p pu ps
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] || continue
    read -r pu ps < <(awk '{sub(/^.*\) /, ""); print $12, $13}' "/proc/$p/stat")
    u=$((u + pu)) s=$((s + ps))
  done
  echo "$u $s"
}
rss_kib() { # pid... → VmRSS summed
  local t=0 p
  for p in "$@"; do t=$(( t + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0) )); done
  echo "$t"
}
CLK_TCK=$(getconf CLK_TCK)

# record_result NAME URL CONNS DURATION "USER0 SYS0 USER1 SYS1" TOOL_JSON → $RAW/NAME.json and a summary line
record_result() {
  local name="$1" url="$2" c="$3" d="$4" json="$6" user0 sys0 user1 sys1
  read -r user0 sys0 user1 sys1 <<< "$5"
  printf '{"name":"%s","url":"%s","connections":%s,"duration_s":%s,"cpu_ticks":%s,"cpu_user_ticks":%s,"cpu_sys_ticks":%s,"clk_tck":%s,"loadavg":"%s","wrk":%s}\n' \
    "$name" "$url" "$c" "$d" "$((user1 + sys1 - user0 - sys0))" "$((user1 - user0))" "$((sys1 - sys0))" "$CLK_TCK" "$(cut -d' ' -f1-3 /proc/loadavg)" "$json" \
    > "$RAW/$name.json"
  python3 - "$RAW/$name.json" >&2 <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); w = r["wrk"]
if not w: print("no result"); sys.exit()
rps = w["requests"] / (w["duration_us"] / 1e6); p = w["latency_us"]["p"]
errs = sum(w["errors"].values())
cpu = r["cpu_ticks"] / r["clk_tck"] * 1e6 / max(w["requests"], 1)
user = r["cpu_user_ticks"] / r["clk_tck"] * 1e6 / max(w["requests"], 1)
print(f'{rps:9.0f} req/s  p50 {p["50"]/1000:.3f} ms  p99 {p["99"]/1000:.3f} ms  p99.9 {p["99.9"]/1000:.3f} ms  '
      f'cpu {cpu:.1f} µs/req (user {user:.1f})' + (f'  ERRORS {errs}' if errs else ''))
PY
}

# run_wrk NAME URL CONNS DURATION "PIDS" [extra wrk args...]; env WRK_BODY/WRK_DELAY_MS pass through
run_wrk() {
  local name="$1" url="$2" c="$3" d="$4" pidlist="$5"; shift 5
  local before after json
  printf '   %-34s ' "$name" >&2
  before=$(cpu_ticks $pidlist)
  "${LOADGEN[@]}" wrk -t1 -c"$c" -d"${d}s" --timeout 10s -s "$BENCH/wrk/report.lua" "$@" "$url" \
    > "$RAW/$name.wrk.txt" 2>&1 || true
  after=$(cpu_ticks $pidlist)
  json=$(sed -n 's/^WRKJSON //p' "$RAW/$name.wrk.txt")
  if [[ -z "$json" ]]; then echo "wrk failed: $(tail -3 "$RAW/$name.wrk.txt")" >&2; json='null'; fi
  record_result "$name" "$url" "$c" "$d" "$before $after" "$json"
}

# run_h2load NAME URL CONNS STREAMS DURATION "PIDS" [extra h2load args...]: HTTP/2 (h2load -t1),
# its summary and per-request log turned into wrk's summary by h2load_json.py.
run_h2load() {
  local name="$1" url="$2" c="$3" m="$4" d="$5" pidlist="$6"; shift 6
  local before after json
  printf '   %-34s ' "$name" >&2
  before=$(cpu_ticks $pidlist)
  "${LOADGEN[@]}" h2load -t1 -c"$c" -m"$m" -D "$d" --log-file="$RAW/$name.h2log" "$@" "$url" \
    > "$RAW/$name.h2load.txt" 2>&1 || true
  after=$(cpu_ticks $pidlist)
  json=$(python3 "$BENCH/h2load_json.py" "$RAW/$name.h2load.txt" "$RAW/$name.h2log" 2>&1 | sed -n 's/^WRKJSON //p')
  if [[ -z "$json" ]]; then echo "h2load failed: $(tail -3 "$RAW/$name.h2load.txt")" >&2; json='null'; fi
  [[ -n "${KEEP_WORK:-}" ]] || rm -f "$RAW/$name.h2log"   # a few MB per run
  record_result "$name" "$url" "$c" "$d" "$before $after" "$json"
}

# start_gateway name port metrics query_port inject external_labels → sets GW_PID_<name>
# Production shape: GW_PROD_TLS_PORT=PORT adds the HTTPS listener (the bench certificate), runs
# $PROD_THREADS threads, unpinned, with the production stub as the write upstream.
# GW_PIN_WORKERS=true sets `server.pin_workers` (the production phase's extra target).
start_gateway() {
  local name="$1" port="$2" metrics="$3" qport="$4" inject="$5" ext="$6"
  local tls_port="${GW_PROD_TLS_PORT:-}" threads="$GW_THREADS" up="$UP_PORT" listen_tls="" run=("${SUT_CPU[@]}")
  if [[ -n "$tls_port" ]]; then
    threads="$PROD_THREADS" up="$PUP_PORT" run=("${PROD_RUN[@]}")
    listen_tls="  https: \"127.0.0.1:$tls_port\"\n  tls: {cert_file: \"$TLS_DIR/cert.pem\", key_file: \"$TLS_DIR/key.pem\"}"
  fi
  sed -e "s|@PORT@|$port|; s|@METRICS_PORT@|$metrics|; s|@QUERY_PORT@|$qport|; s|@UPSTREAM_PORT@|$up|" \
      -e "s|@INJECT@|$inject|; s|@EXTERNAL_LABELS@|$ext|; s|@HASH@|$HASH|; s|@THREADS@|$threads|" \
      -e "s|@LISTEN_TLS@|$listen_tls|; s|@PIN_WORKERS@|${GW_PIN_WORKERS:-false}|" \
      "$BENCH/gateway.yaml.in" > "$WORK/gateway-$name.yaml"
  "$WHIZARD" check-config "$WORK/gateway-$name.yaml" >/dev/null
  RUST_LOG=warn "${run[@]}" "$WHIZARD" gateway --config "$WORK/gateway-$name.yaml" \
    > "$WORK/gateway-$name.log" 2>&1 &
  local pid=$!; pids+=("$pid")
  wait_http "http://127.0.0.1:$port/-/ready" "gateway $name"
  printf -v "GW_PID_$name" '%s' "$pid"
}

# ---------------------------------------------------------------- P. production shape (headline)
# prod_check URL WANT_VERSION WHAT [curl args...]: exits unless URL answers 200 over HTTP/WANT_VERSION
prod_check() {
  local url="$1" want="$2" what="$3" got; shift 3
  got=$(curl -sk -o /dev/null -w '%{http_code} %{http_version}' "$@" "$url") || true
  [[ "$got" == "200 $want" ]] || { echo "sanity check failed: $what $url → '$got' (want 200 over HTTP/$want)" >&2; exit 1; }
}
# wait_code URL WHAT [curl args...]: waits for URL to answer 200 (curl -k)
wait_code() {
  local url="$1" what="$2" code; shift 2
  for _ in $(seq 1 100); do
    code=$(curl -sk -o /dev/null -w '%{http_code}' "$@" "$url") || true
    [[ "$code" == 200 ]] && return 0; sleep 0.2
  done
  echo "timed out waiting for $what ($url)" >&2; exit 1
}
ver_ge() { printf '%s\n%s\n' "$2" "$1" | sort -V -C; }   # ver_ge A B: version A ≥ B

production_phase() {
  local pp=() t r shape
  say "P. production shape: whizard, haproxy, nginx with $PROD_THREADS threads/workers each, unpinned; $ROUNDS round(s) of ${ROUND_DURATION}s per target and mode"
  LOADGEN=("${PROD_RUN[@]}")

  "${PROD_RUN[@]}" "$STUB" "127.0.0.1:$PUP_PORT" "$PROD_THREADS" > "$WORK/upstream-production.log" 2>&1 &
  PUP_PID=$!; pids+=("$PUP_PID"); pp+=("$PUP_PID")
  wait_http "http://127.0.0.1:$PUP_PORT$PATH_RO" "production upstream stub"

  # whizard: the read/write gateway and, in front of Prometheus, the query gateway.
  GW_PROD_TLS_PORT=$PGW_TLS start_gateway production "$PGW_PORT" "$PGW_METRICS" "$PUP_PORT" true "    external_labels: {cluster: prod-eu-1}"
  local gw_pid="$GW_PID_production"; pp+=("$gw_pid")
  # The same gateway with `server.pin_workers: true` (each worker on a CPU of its own): an extra
  # row, not the headline, which stays at the defaults.
  GW_PIN_WORKERS=true GW_PROD_TLS_PORT=$PGWP_TLS start_gateway production_pinned "$PGWP_PORT" "$PGWP_METRICS" "$PUP_PORT" true "    external_labels: {cluster: prod-eu-1}"
  local gwp_pid="$GW_PID_production_pinned"; pp+=("$gwp_pid")

  # haproxy: one process, nbthread = cores; a hashed (BENCH_HAPROXY_HASH) and a plain-text frontend.
  local hap_hash; hap_hash=$(openssl passwd "$HAPROXY_PASSWD_FLAG" "${USER_PASS#*:}")
  cat "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem" > "$TLS_DIR/haproxy.pem"
  sed -e "s|@THREADS@|$PROD_THREADS|g; s|@PORT@|$HAP_PORT|g; s|@TLS_PORT@|$HAP_TLS|g; s|@PLAIN_PORT@|$HAPP_PORT|g" \
      -e "s|@PLAIN_TLS_PORT@|$HAPP_TLS|g; s|@CERT_PEM@|$TLS_DIR/haproxy.pem|g; s|@UPSTREAM_PORT@|$PUP_PORT|g" \
      -e "s|@PASSWORD_HASH@|$hap_hash|g; s|@PASSWORD_KIND@|$HAPROXY_HASH_KIND|g; s|@PLAIN_PASSWORD@|${USER_PASS#*:}|g" \
      "$BENCH/haproxy.cfg.in" > "$WORK/haproxy.cfg"
  haproxy -c -q -f "$WORK/haproxy.cfg"
  "${PROD_RUN[@]}" haproxy -db -f "$WORK/haproxy.cfg" > "$WORK/haproxy.log" 2>&1 &
  local hap_pid=$!; pids+=("$hap_pid"); pp+=("$hap_pid")
  wait_code "http://127.0.0.1:$HAPP_PORT$PATH_RO" haproxy -u "$USER_PASS"

  # nginx: worker_processes auto; HTTP/2 switched on the way this nginx version takes it.
  local nv h2_directives="" listen_http2=""
  nv=$(nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
  if ver_ge "$nv" 1.25.1; then h2_directives="    http2 on;"; else listen_http2=" http2"; fi
  ver_ge "$nv" 1.19.7 || h2_directives="    http2_max_requests 1000000;"
  sed -e "s|@WORK@|$WORK|g; s|@UPSTREAM_PORT@|$PUP_PORT|g; s|@PORT@|$NGP_PORT|g; s|@TLS_PORT@|$NGP_TLS|g" \
      -e "s|@CERT@|$TLS_DIR/cert.pem|g; s|@KEY@|$TLS_DIR/key.pem|g; s|@HTTP2_DIRECTIVES@|$h2_directives|g; s|@LISTEN_HTTP2@|$listen_http2|g" \
      "$BENCH/nginx-production.conf.in" > "$WORK/nginx-production.conf"
  "${PROD_RUN[@]}" nginx -e "$WORK/nginx-production-error.log" -p "$WORK" -c "$WORK/nginx-production.conf" &
  local ngp_master=$!; pids+=("$ngp_master"); pp+=("$ngp_master")
  wait_code "http://127.0.0.1:$NGP_PORT$PATH_RO" "nginx (production)" -u "$USER_PASS"
  local ngp_pids; ngp_pids="$ngp_master $(pgrep -P "$ngp_master" | tr '\n' ' ')"

  # Prometheus (scraping itself, as team-a) behind the query gateway, as in section 2; unpinned.
  cat > "$WORK/prometheus-production.yml" <<YAML
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:$PPROM_PORT"], labels: {tenant_id: team-a}}]
YAML
  "${PROD_RUN[@]}" prometheus --web.listen-address="127.0.0.1:$PPROM_PORT" --storage.tsdb.path="$WORK/prom-production" \
    --config.file="$WORK/prometheus-production.yml" --log.level=warn > "$WORK/prometheus-production.log" 2>&1 &
  local pprom_pid=$!; pids+=("$pprom_pid"); pp+=("$pprom_pid")
  wait_code "http://127.0.0.1:$PPROM_PORT/-/ready" "prometheus (production)"
  GW_PROD_TLS_PORT=$PGWQ_TLS start_gateway production_query "$PGWQ_PORT" "$PGWQ_METRICS" "$PPROM_PORT" true ""
  local gwq_pid="$GW_PID_production_query"; pp+=("$gwq_pid")

  # Targets of the read rounds: plain port, TLS port, pids whose CPU is counted.
  local targets=(whizard whizard-pinned haproxy haproxy-plain nginx)
  local -A t_http=([whizard]=$PGW_PORT [whizard-pinned]=$PGWP_PORT [haproxy]=$HAP_PORT [haproxy-plain]=$HAPP_PORT [nginx]=$NGP_PORT)
  local -A t_tls=([whizard]=$PGW_TLS [whizard-pinned]=$PGWP_TLS [haproxy]=$HAP_TLS [haproxy-plain]=$HAPP_TLS [nginx]=$NGP_TLS)
  local -A t_pids=([whizard]=$gw_pid [whizard-pinned]=$gwp_pid [haproxy]=$hap_pid [haproxy-plain]=$hap_pid [nginx]="$ngp_pids")

  # Sanity: every target answers 200 in every mode, over the protocol that mode is meant to use,
  # and refuses a request without credentials.
  prod_check "http://127.0.0.1:$PUP_PORT$PATH_RO" 1.1 "direct"
  for t in "${targets[@]}"; do
    prod_check "http://127.0.0.1:${t_http[$t]}$PATH_RO"  1.1 "$t (HTTP/1.1)" -u "$USER_PASS" --http1.1
    prod_check "https://127.0.0.1:${t_tls[$t]}$PATH_RO"  1.1 "$t (HTTPS, HTTP/1.1)" -u "$USER_PASS" --http1.1
    prod_check "https://127.0.0.1:${t_tls[$t]}$PATH_RO"  2   "$t (HTTPS, HTTP/2)" -u "$USER_PASS" --http2
    code=$(curl -sk --http2 -o /dev/null -w '%{http_code}' "https://127.0.0.1:${t_tls[$t]}$PATH_RO") || true
    [[ "$code" == 401 ]] || { echo "sanity check failed: $t answers $code without credentials (want 401)" >&2; exit 1; }
  done
  local qw="https://127.0.0.1:$PGWQ_TLS/api/v1/query?query=$(enc "$Q_USER")"
  local qd="http://127.0.0.1:$PPROM_PORT/api/v1/query?query=$(enc "$Q_DIRECT")"
  for _ in $(seq 1 60); do   # rate() over 1m needs two scrapes
    out=$(curl -s "$qd")
    [[ "$out" == *'"value"'* ]] && break; sleep 0.5
  done
  prod_check "$qw" 2 "query through whizard (HTTPS, HTTP/2)" -u "$USER_PASS" --http2
  prod_check "$qd" 1.1 "query direct to Prometheus (HTTP/1.1)" --http1.1
  curl -sk --http2 -u "$USER_PASS" "$qw" > "$RAW/prod-query-whizard-sample.json"
  curl -s "$qd" > "$RAW/prod-query-direct-sample.json"
  code=$(curl -sk --http1.1 -o /dev/null -w '%{http_code}' -u "$USER_PASS" "${RW_V1[@]}" \
    --data-binary "@$WORK/payloads/v1-500x10.snappy" "https://127.0.0.1:$PGW_TLS/api/v1/write") || true
  [[ "$code" == 2* ]] || { echo "sanity check failed: remote write over HTTPS through whizard → $code" >&2; exit 1; }

  # What each TLS listener negotiates with an OpenSSL client (wrk's library) offering http/1.1.
  local tls_json="" cipher
  for t in "${targets[@]}"; do
    local port="${t_tls[$t]}"
    cipher=$(openssl s_client -connect "127.0.0.1:$port" -alpn http/1.1 -brief < /dev/null 2>&1 \
      | awk -F': ' '/^Protocol version/ {v=$2} /^Ciphersuite/ {c=$2} END {print v " " c}')
    tls_json+="${tls_json:+,}\"$t\":\"$cipher\""
  done
  printf '{"threads":%s,"nginx_workers":%s,"connections":%s,"h2_streams":%s,"query_h2":"-c16 -m4","query_direct":"--h1 -c64 -m1","write":"wrk -t1 -c8 -d%ss","haproxy_hash":"%s","haproxy":"%s","nginx":"%s","h2load":"%s","wrk":"%s","openssl":"%s","tls_openssl_client":{%s}}\n' \
    "$PROD_THREADS" "$(pgrep -c -P "$ngp_master")" "$PROD_CONNS" "$PROD_STREAMS" "$WRITE_DURATION" "$HAPROXY_HASH_KIND" \
    "$(haproxy -v | awk 'NR == 1 {print $3}')" "$nv" "$(h2load --version | awk '{print $2}')" \
    "$(wrk -v 2>&1 | awk 'NR == 1 {print $2}')" "$(openssl version | awk '{print $2}')" "$tls_json" > "$RAW/production.json"

  # Interleaved rounds: each round runs every mode, and in each mode every target, in turn.
  mkdir -p "$RAW/rounds"
  for r in $(seq 1 "$ROUNDS"); do
    run_wrk "rounds/prod-http1-direct.$r" "http://127.0.0.1:$PUP_PORT$PATH_RO" "$PROD_CONNS" "$ROUND_DURATION" "$PUP_PID"
    for t in "${targets[@]}"; do
      run_wrk "rounds/prod-http1-$t.$r" "http://127.0.0.1:${t_http[$t]}$PATH_RO" "$PROD_CONNS" "$ROUND_DURATION" "${t_pids[$t]}" -H "$AUTH"
    done
    for t in "${targets[@]}"; do
      run_wrk "rounds/prod-https1-$t.$r" "https://127.0.0.1:${t_tls[$t]}$PATH_RO" "$PROD_CONNS" "$ROUND_DURATION" "${t_pids[$t]}" -H "$AUTH"
    done
    for t in "${targets[@]}"; do
      run_h2load "rounds/prod-h2-$t.$r" "https://127.0.0.1:${t_tls[$t]}$PATH_RO" "$PROD_CONNS" "$PROD_STREAMS" "$ROUND_DURATION" "${t_pids[$t]}" -H "$AUTH_H2"
    done
    # Pipelined HTTP/1.1: as many requests in flight per connection as the HTTP/2 streams.
    run_h2load "rounds/prod-h1pipe-direct.$r" "http://127.0.0.1:$PUP_PORT$PATH_RO" "$PROD_CONNS" "$PROD_STREAMS" "$ROUND_DURATION" "$PUP_PID" --h1
    for t in "${targets[@]}"; do
      run_h2load "rounds/prod-h1pipe-$t.$r" "http://127.0.0.1:${t_http[$t]}$PATH_RO" "$PROD_CONNS" "$PROD_STREAMS" "$ROUND_DURATION" "${t_pids[$t]}" --h1 -H "$AUTH_H2"
    done
    # Moderate load (8 connections, one request per 4 ms on each): what a proxy adds to the
    # latency when it is not saturated. Direct over plain HTTP (the stub speaks no TLS), the
    # proxies over HTTPS; haproxy with its crypt(3) hash cannot keep this pace and is left out.
    export WRK_DELAY_MS=4
    run_wrk "rounds/prod-moderate-direct.$r" "http://127.0.0.1:$PUP_PORT$PATH_RO" 8 "$ROUND_DURATION" "$PUP_PID"
    for t in whizard haproxy-plain nginx; do
      run_wrk "rounds/prod-moderate-$t.$r" "https://127.0.0.1:${t_tls[$t]}$PATH_RO" 8 "$ROUND_DURATION" "${t_pids[$t]}" -H "$AUTH"
    done
    unset WRK_DELAY_MS
  done

  say "P. remote write over HTTPS (HTTP/1.1) through whizard, and direct to the stub (plain HTTP): wrk -t1 -c8 -d${WRITE_DURATION}s"
  for shape in 2000x1 500x10; do
    export WRK_BODY="$WORK/payloads/v1-$shape.snappy"
    run_wrk "prod-write-$shape-direct"     "http://127.0.0.1:$PUP_PORT/api/v1/write" 8 "$WRITE_DURATION" "$PUP_PID" "${RW_V1[@]}"
    run_wrk "prod-write-$shape-whizard-v1" "https://127.0.0.1:$PGW_TLS/api/v1/write" 8 "$WRITE_DURATION" "$gw_pid" -H "$AUTH" "${RW_V1[@]}"
    export WRK_BODY="$WORK/payloads/v2-$shape.snappy"
    run_wrk "prod-write-$shape-whizard-v2" "https://127.0.0.1:$PGW_TLS/api/v1/write" 8 "$WRITE_DURATION" "$gw_pid" -H "$AUTH" "${RW_V2[@]}"
  done
  unset WRK_BODY

  # The reference: the same Prometheus asked directly (the already-labelled query), with as many
  # requests in flight (64), over plain HTTP/1.1 — Prometheus serves HTTP/2 only with TLS.
  say "P. /api/v1/query: over HTTP/2 through whizard (h2load -c16 -m4), direct to Prometheus over HTTP/1.1 (h2load --h1 -c64)"
  run_h2load prod-query-direct  "$qd" 64 1 "$DURATION" "$pprom_pid" --h1
  run_h2load prod-query-whizard "$qw" 16 4 "$DURATION" "$gwq_pid" -H "$AUTH_H2"

  # Stop the phase's processes (the pinned phases, if any follow, do not share the machine with them).
  local keep=() x y
  for x in "${pp[@]}"; do kill "$x" 2>/dev/null || true; done
  for x in "${pp[@]}"; do wait "$x" 2>/dev/null || true; done
  for x in "${pids[@]}"; do
    for y in "${pp[@]}"; do [[ "$x" == "$y" ]] && continue 2; done
    keep+=("$x")
  done
  pids=("${keep[@]}")
  LOADGEN=("${LOAD_CPU[@]}")
}

write_report() {
  say "report"
  local meta
  meta=$(printf '{"date":"%s","host_cpus":%s,"cpu_model":"%s","gateway_threads":%s,"pinned":%s,"wrk":"-t1 -c%s -d%ss","rounds":%s,"round_s":%s,"production_only":%s,"git":"%s","loadavg_end":"%s"}' \
    "$(date -u +%FT%TZ)" "$(nproc)" "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" "$GW_THREADS" \
    "$([[ ${#SUT_CPU[@]} -gt 0 ]] && echo true || echo false)" "$CONNS" "$DURATION" "$ROUNDS" "$ROUND_DURATION" \
    "$([[ $PROD_ONLY == 1 ]] && echo true || echo false)" \
    "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" "$(cut -d' ' -f1-3 /proc/loadavg)")
  python3 "$BENCH/report.py" "$RAW" "$OUT" "$meta"
}

# ---------------------------------------------------------------- setup
say "setup in $WORK (ports from $BASE)"
USER_PASS="bench:bench-secret"
AUTH="Authorization: Basic $(printf %s "$USER_PASS" | base64)"
AUTH_H2="authorization: Basic $(printf %s "$USER_PASS" | base64)"   # HTTP/2 field names are lower case
HASH=$(printf %s bench-secret | "$WHIZARD" hash-password)
htpasswd -bcs "$WORK/htpasswd-sha" bench bench-secret 2>/dev/null
htpasswd -bcm "$WORK/htpasswd-apr1" bench bench-secret 2>/dev/null
"$TOOL" payloads "$WORK/payloads"
# One ECDSA P-256 certificate for every TLS listener (whizard, haproxy, nginx, Prometheus).
TLS_DIR="$WORK/tls"; mkdir -p "$TLS_DIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" 2>/dev/null
PATH_RO="/api/v1/status/buildinfo"
RW_V1=(-H "Content-Type: application/x-protobuf" -H "Content-Encoding: snappy" -H "X-Prometheus-Remote-Write-Version: 0.1.0")
RW_V2=(-H "Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request" -H "Content-Encoding: snappy" -H "X-Prometheus-Remote-Write-Version: 2.0.0")
Q_USER='sum by (job, handler) (rate(prometheus_http_requests_total[1m]))'
Q_DIRECT='sum by (job, handler) (rate(prometheus_http_requests_total{tenant_id="team-a"}[1m]))'
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

if ((PROD_ONLY)); then
  production_phase
  write_report
  exit 0
fi

"${LOAD_CPU[@]}" "$STUB" "127.0.0.1:$UP_PORT" 1 > "$WORK/upstream.log" 2>&1 &
UP_PID=$!; pids+=("$UP_PID")
wait_http "http://127.0.0.1:$UP_PORT/api/v1/status/buildinfo" "upstream stub"

start_gateway main "$GW_PORT" "$GW_METRICS" "$UP_PORT" true "    external_labels: {cluster: prod-eu-1}"
GW_PID="$GW_PID_main"
RSS_FRESH=$(rss_kib "$GW_PID")

sed -e "s|@WORK@|$WORK|g; s|@UPSTREAM_PORT@|$UP_PORT|; s|@NGINX_PORT@|$NGINX_PORT|; s|@NGINX_APR1_PORT@|$NGINX_APR1_PORT|" \
  "$BENCH/nginx.conf.in" > "$WORK/nginx.conf"
"${SUT_CPU[@]}" nginx -e "$WORK/nginx-error.log" -p "$WORK" -c "$WORK/nginx.conf" &
NGINX_MASTER=$!; pids+=("$NGINX_MASTER")
for _ in $(seq 1 50); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -u "$USER_PASS" "http://127.0.0.1:$NGINX_PORT/api/v1/status/buildinfo") || true
  [[ "$code" == 200 ]] && break; sleep 0.2
done
NGINX_PIDS="$NGINX_MASTER $(pgrep -P "$NGINX_MASTER" | tr '\n' ' ')"

# vmauth on the same pinned core; one P (GOMAXPROCS) like the gateway's one thread and nginx's
# one worker (Go would take it from the affinity mask anyway when pinned).
sed -e "s|@UPSTREAM_PORT@|$UP_PORT|" "$BENCH/vmauth.yml.in" > "$WORK/vmauth.yml"
GOMAXPROCS=1 "${SUT_CPU[@]}" vmauth -auth.config="$WORK/vmauth.yml" -httpListenAddr="127.0.0.1:$VMAUTH_PORT" \
  -loggerLevel=WARN > "$WORK/vmauth.log" 2>&1 &
VMAUTH_PID=$!; pids+=("$VMAUTH_PID")
for _ in $(seq 1 50); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -u "$USER_PASS" "http://127.0.0.1:$VMAUTH_PORT/api/v1/status/buildinfo") || true
  [[ "$code" == 200 ]] && break; sleep 0.2
done

# The floor: a 1:1 relay that does the same job with no HTTP machinery (bench/tools/src/relay.rs).
"${SUT_CPU[@]}" "$TOOL" relay "127.0.0.1:$RELAY_PORT" "127.0.0.1:$UP_PORT" "$USER_PASS" THANOS-TENANT team-a \
  > "$WORK/relay.log" 2>&1 &
RELAY_PID=$!; pids+=("$RELAY_PID")
wait_http "http://$USER_PASS@127.0.0.1:$RELAY_PORT/api/v1/status/buildinfo" "relay"

# Sanity: every path answers 200 before measuring.
for url in "http://127.0.0.1:$UP_PORT/api/v1/status/buildinfo" "http://127.0.0.1:$GW_PORT/api/v1/status/buildinfo" \
           "http://127.0.0.1:$NGINX_PORT/api/v1/status/buildinfo" "http://127.0.0.1:$NGINX_APR1_PORT/api/v1/status/buildinfo" \
           "http://127.0.0.1:$VMAUTH_PORT/api/v1/status/buildinfo" "http://127.0.0.1:$RELAY_PORT/api/v1/status/buildinfo"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -u "$USER_PASS" "$url")
  [[ "$code" == 200 ]] || { echo "sanity check failed: $url → $code" >&2; exit 1; }
done

# ---------------------------------------------------------------- 4. micro (first: quiet machine)
say "microbenchmarks and codec throughput (one core, ${MICRO_SECS}s per case)"
"${SUT_CPU[@]}" "$TOOL" micro "$RAW/micro.json" "$MICRO_SECS"

# ---------------------------------------------------------------- P. production shape
production_phase

# ---------------------------------------------------------------- 1. read pass-through
say "1. read pass-through $PATH_RO: wrk -t1 -c$CONNS (saturated), then -c8 paced 4 ms/request; $ROUNDS round(s) of ${ROUND_DURATION}s per target"
# Each round runs every target once, in the same order; report.py pools the rounds of a target
# (requests, CPU, latency distribution) and shows the per-round ratios.
mkdir -p "$RAW/rounds"
for r in $(seq 1 "$ROUNDS"); do
  run_wrk "rounds/read-direct.$r"     "http://127.0.0.1:$UP_PORT$PATH_RO"          "$CONNS" "$ROUND_DURATION" "$UP_PID"
  run_wrk "rounds/read-whizard.$r"    "http://127.0.0.1:$GW_PORT$PATH_RO"          "$CONNS" "$ROUND_DURATION" "$GW_PID" -H "$AUTH"
  run_wrk "rounds/read-nginx.$r"      "http://127.0.0.1:$NGINX_PORT$PATH_RO"       "$CONNS" "$ROUND_DURATION" "$NGINX_PIDS" -H "$AUTH"
  run_wrk "rounds/read-nginx-apr1.$r" "http://127.0.0.1:$NGINX_APR1_PORT$PATH_RO"  "$CONNS" "$ROUND_DURATION" "$NGINX_PIDS" -H "$AUTH"
  run_wrk "rounds/read-vmauth.$r"     "http://127.0.0.1:$VMAUTH_PORT$PATH_RO"      "$CONNS" "$ROUND_DURATION" "$VMAUTH_PID" -H "$AUTH"
  run_wrk "rounds/read-relay.$r"      "http://127.0.0.1:$RELAY_PORT$PATH_RO"       "$CONNS" "$ROUND_DURATION" "$RELAY_PID" -H "$AUTH"
done
# Moderate load: 8 connections, each waiting 4 ms between requests (at most ~2,000 req/s).
export WRK_DELAY_MS=4
for r in $(seq 1 "$ROUNDS"); do
  run_wrk "rounds/moderate-direct.$r"  "http://127.0.0.1:$UP_PORT$PATH_RO"    8 "$ROUND_DURATION" "$UP_PID"
  run_wrk "rounds/moderate-whizard.$r" "http://127.0.0.1:$GW_PORT$PATH_RO"    8 "$ROUND_DURATION" "$GW_PID" -H "$AUTH"
  run_wrk "rounds/moderate-nginx.$r"   "http://127.0.0.1:$NGINX_PORT$PATH_RO" 8 "$ROUND_DURATION" "$NGINX_PIDS" -H "$AUTH"
  run_wrk "rounds/moderate-vmauth.$r"  "http://127.0.0.1:$VMAUTH_PORT$PATH_RO" 8 "$ROUND_DURATION" "$VMAUTH_PID" -H "$AUTH"
  run_wrk "rounds/moderate-relay.$r"   "http://127.0.0.1:$RELAY_PORT$PATH_RO"  8 "$ROUND_DURATION" "$RELAY_PID" -H "$AUTH"
done
unset WRK_DELAY_MS
if ((PROFILE)) && command -v perf >/dev/null; then
  say "   profiling the gateway with perf during a pass-through phase"
  # Software clock sampling works where hardware counters are not exposed (VMs, containers).
  perf record -e cpu-clock -F 499 --call-graph dwarf,8192 -p "$GW_PID" -o "$WORK/perf.data" \
    -- sleep "$DURATION" >/dev/null 2>&1 &
  PERF_PID=$!
  run_wrk read-whizard-profiled "http://127.0.0.1:$GW_PORT$PATH_RO" "$CONNS" "$DURATION" "$GW_PID" -H "$AUTH"
  wait "$PERF_PID" || true
  {
    echo "# self time (perf report --no-children --sort dso,symbol)"
    perf report -i "$WORK/perf.data" --no-children --percent-limit 0.5 --stdio --sort dso,symbol -g none 2>/dev/null | grep -v '^$' | grep -v '^#' | head -80
    echo; echo "# inclusive time (perf report --children --sort symbol)"
    perf report -i "$WORK/perf.data" --children --percent-limit 2 --stdio --sort symbol -g none 2>/dev/null | grep -v '^$' | grep -v '^#' | head -80
  } > "$OUT/profile.txt" || true
fi

# ---------------------------------------------------------------- 3. remote write end to end
say "3. remote write end to end: POST snappy bodies, wrk -t1 -c8 -d${WRITE_DURATION}s"
start_gateway passthrough "$GWP_PORT" "$GWP_METRICS" "$UP_PORT" false ""
for shape in 2000x1 500x10; do
  export WRK_BODY="$WORK/payloads/v1-$shape.snappy"
  run_wrk "write-$shape-direct"         "http://127.0.0.1:$UP_PORT/api/v1/write" 8 "$WRITE_DURATION" "$UP_PID" "${RW_V1[@]}"
  run_wrk "write-$shape-whizard-pass"   "http://127.0.0.1:$GWP_PORT/api/v1/write" 8 "$WRITE_DURATION" "$GW_PID_passthrough" -H "$AUTH" "${RW_V1[@]}"
  run_wrk "write-$shape-whizard-v1"     "http://127.0.0.1:$GW_PORT/api/v1/write" 8 "$WRITE_DURATION" "$GW_PID" -H "$AUTH" "${RW_V1[@]}"
  export WRK_BODY="$WORK/payloads/v2-$shape.snappy"
  run_wrk "write-$shape-whizard-v2"     "http://127.0.0.1:$GW_PORT/api/v1/write" 8 "$WRITE_DURATION" "$GW_PID" -H "$AUTH" "${RW_V2[@]}"
done
unset WRK_BODY
kill "$GW_PID_passthrough" 2>/dev/null || true

# ---------------------------------------------------------------- 2. query with enforcement
say "2. /api/v1/query through whizard (enforced) vs direct to Prometheus"
cat > "$WORK/prometheus.yml" <<YAML
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:$PROM_PORT"], labels: {tenant_id: team-a}}]
YAML
"${LOAD_CPU[@]}" prometheus --web.listen-address="127.0.0.1:$PROM_PORT" --storage.tsdb.path="$WORK/prom" \
  --config.file="$WORK/prometheus.yml" --log.level=warn > "$WORK/prometheus.log" 2>&1 &
PROM_PID=$!; pids+=("$PROM_PID")
wait_http "http://127.0.0.1:$PROM_PORT/-/ready" prometheus
start_gateway query "$GWQ_PORT" "$GWQ_METRICS" "$PROM_PORT" true ""
for _ in $(seq 1 60); do
  out=$(curl -s "http://127.0.0.1:$PROM_PORT/api/v1/query?query=$(enc "$Q_DIRECT")")
  [[ "$out" == *'"value"'* ]] && break; sleep 0.5
done
curl -s -u "$USER_PASS" "http://127.0.0.1:$GWQ_PORT/api/v1/query?query=$(enc "$Q_USER")" > "$RAW/query-whizard-sample.json"
curl -s "http://127.0.0.1:$PROM_PORT/api/v1/query?query=$(enc "$Q_DIRECT")" > "$RAW/query-direct-sample.json"
run_wrk query-direct  "http://127.0.0.1:$PROM_PORT/api/v1/query?query=$(enc "$Q_DIRECT")" 16 "$DURATION" "$PROM_PID"
run_wrk query-whizard "http://127.0.0.1:$GWQ_PORT/api/v1/query?query=$(enc "$Q_USER")"   16 "$DURATION" "$GW_PID_query" -H "$AUTH"

# ---------------------------------------------------------------- 5. memory
say "5. memory: RSS with idle keep-alive connections"
settle() { sleep 2; }
settle
RSS_IDLE=$(rss_kib "$GW_PID"); NGINX_RSS_IDLE=$(rss_kib $NGINX_PIDS); VMAUTH_RSS_IDLE=$(rss_kib "$VMAUTH_PID")
rss_with() { # port "pids" n → "kib opened": RSS of pids while n keep-alive connections to port sit idle
  local port="$1" pidlist="$2" n="$3"
  local hold=$(( n > 2000 ? 40 : 15 )) out="$WORK/conns-$port-$n.out"
  "$TOOL" conns "127.0.0.1:$port" "$n" "$hold" "$USER_PASS" > "$out" &
  local t=$!
  for _ in $(seq 1 $((hold * 10))); do [[ -s "$out" ]] && break; sleep 0.1; done
  settle
  local kib; kib=$(rss_kib $pidlist)
  kill "$t" 2>/dev/null; wait "$t" 2>/dev/null || true
  echo "$kib $(awk '{print $2}' "$out")"
}
for n in 1000 10000; do
  read -r kib opened < <(rss_with "$GW_PORT" "$GW_PID" "$n");        printf -v "RSS_$n" %s "$kib"; printf -v "OPEN_$n" %s "${opened:-0}"
  read -r kib opened < <(rss_with "$NGINX_PORT" "$NGINX_PIDS" "$n"); printf -v "NGINX_RSS_$n" %s "$kib"; printf -v "NOPEN_$n" %s "${opened:-0}"
  read -r kib opened < <(rss_with "$VMAUTH_PORT" "$VMAUTH_PID" "$n"); printf -v "VMAUTH_RSS_$n" %s "$kib"; printf -v "VOPEN_$n" %s "${opened:-0}"
  g="RSS_$n" x="NGINX_RSS_$n" v="VMAUTH_RSS_$n"
  echo "   $n conns: gateway $((${!g} / 1024)) MiB, nginx $((${!x} / 1024)) MiB, vmauth $((${!v} / 1024)) MiB" >&2
done
cat > "$RAW/memory.json" <<JSON
{"gateway_rss_kib":{"fresh":$RSS_FRESH,"idle_after_load":$RSS_IDLE,"conns_1000":$RSS_1000,"conns_10000":$RSS_10000},
 "nginx_rss_kib":{"idle_after_load":$NGINX_RSS_IDLE,"conns_1000":$NGINX_RSS_1000,"conns_10000":$NGINX_RSS_10000},
 "vmauth_rss_kib":{"idle_after_load":$VMAUTH_RSS_IDLE,"conns_1000":$VMAUTH_RSS_1000,"conns_10000":$VMAUTH_RSS_10000},
 "opened":{"gateway_1000":$OPEN_1000,"gateway_10000":$OPEN_10000,"nginx_1000":$NOPEN_1000,"nginx_10000":$NOPEN_10000,"vmauth_1000":$VOPEN_1000,"vmauth_10000":$VOPEN_10000}}
JSON

# ---------------------------------------------------------------- criterion (optional)
if ((CRITERION)); then
  if grep -q '^criterion' "$ROOT/Cargo.toml"; then
    say "criterion benches (cargo bench)"
    cargo bench --bench auth --bench enforce --bench remote_write -- --warm-up-time 1 --measurement-time 3 \
      2>&1 | grep -E '^[a-z_/0-9]+ +time:|time:|thrpt:' | tee "$RAW/criterion.txt" >&2 || true
  else
    echo "criterion is not in Cargo.toml [dev-dependencies]: skipped (see bench/README.md)" >&2
  fi
fi

# ---------------------------------------------------------------- report
write_report
