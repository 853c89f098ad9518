#!/usr/bin/env bash
# The README's first command: a Prometheus on loopback as the stand-in Thanos backend, the
# whizard gateway in front of it with two tenants (config/demo.yaml), one Prometheus agent per
# tenant remote-writing through the gateway, then queries as each tenant.
#
#   scripts/demo.sh          run the walkthrough, then stop everything
#   scripts/demo.sh --keep   leave the stack running (Ctrl-C stops it)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KEEP=0; [[ "${1:-}" == "--keep" ]] && KEEP=1

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; eval "$@"; echo; }

need=()
for b in prometheus promtool cmake curl; do command -v "$b" >/dev/null || need+=("$b"); done
if ((${#need[@]})); then
  say "installing Debian packages (prometheus, cmake, curl)"
  export DEBIAN_FRONTEND=noninteractive
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
  apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus cmake curl >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

say "building whizard"
cargo build --quiet --bin whizard
WHIZARD="$ROOT/target/debug/whizard"

WORK="$(mktemp -d /tmp/whizard-demo.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

wait_http() { # url what
  for _ in $(seq 1 150); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done
  echo "timed out waiting for $2 ($1)" >&2; exit 1
}

say "backend: Prometheus with the remote-write receiver on 127.0.0.1:19090 (stands in for Thanos)"
echo 'global: {scrape_interval: 15s}' > "$WORK/backend.yml"
prometheus --web.enable-remote-write-receiver --web.listen-address=127.0.0.1:19090 \
  --storage.tsdb.path="$WORK/backend" --config.file="$WORK/backend.yml" >"$WORK/backend.log" 2>&1 &
pids+=($!)
wait_http http://127.0.0.1:19090/-/ready backend

say "gateway: whizard on 127.0.0.1:8080 (metrics on :9091), config/demo.yaml"
run "$WHIZARD" check-config config/demo.yaml
"$WHIZARD" gateway --config config/demo.yaml >"$WORK/gateway.log" 2>&1 &
pids+=($!)
wait_http http://127.0.0.1:8080/-/ready gateway

say "two Prometheus agents remote-write through the gateway as agent-a (team-a) and agent-b (team-b)"
for t in a b; do
  port=$([[ $t == a ]] && echo 19101 || echo 19102)
  cat > "$WORK/agent-$t.yml" <<YAML
global: {scrape_interval: 2s}
scrape_configs:
  - job_name: agent-$t
    static_configs: [{targets: ["127.0.0.1:$port"]}]
remote_write:
  - url: http://127.0.0.1:8080/api/v1/write
    basic_auth: {username: agent-$t, password: agent-$t-secret}
    queue_config: {batch_send_deadline: 1s}
YAML
  echo "--- agent-$t.yml"; cat "$WORK/agent-$t.yml"
  prometheus --enable-feature=agent --config.file="$WORK/agent-$t.yml" \
    --storage.agent.path="$WORK/agent-$t" --web.listen-address=127.0.0.1:$port >"$WORK/agent-$t.log" 2>&1 &
  pids+=($!)
done

say "waiting for both tenants' samples to arrive"
for u in alice bob; do
  for _ in $(seq 1 100); do
    out=$(curl -s -u "$u:$u-secret" 'http://127.0.0.1:8080/api/v1/query?query=up')
    [[ "$out" == *'"value"'* ]] && break; sleep 0.3
  done
done

say "alice reads team-a: every series carries tenant_id=\"team-a\" (and the tenant's cluster label)"
run promtool query instant http://alice:alice-secret@127.0.0.1:8080 "'count by (job, tenant_id, cluster) (up)'"
say "bob reads team-b"
run promtool query instant http://bob:bob-secret@127.0.0.1:8080 "'count by (job, tenant_id, cluster) (up)'"
say "alice asks for team-b's data: refused (403), never forwarded"
run curl -s -u alice:alice-secret http://127.0.0.1:8080/api/v1/query --data-urlencode "'query=up{tenant_id=\"team-b\"}'"
say "series API: match[] is enforced (added when absent)"
run curl -s -u bob:bob-secret "'http://127.0.0.1:8080/api/v1/series?match[]=up'"
say "no credentials: 401; a write-only agent reading: 403"
run curl -s -i "http://127.0.0.1:8080/api/v1/query?query=up" "| head -1"
run curl -s -u agent-a:agent-a-secret "'http://127.0.0.1:8080/api/v1/query?query=up'"
say "the gateway's own metrics"
run curl -s http://127.0.0.1:9091/metrics "| grep -E '^whizard_(gateway_requests_total|remote_write_samples_total)' | head -12"

if ((KEEP)); then
  say "stack running: gateway http://127.0.0.1:8080, backend http://127.0.0.1:19090 — Ctrl-C stops it"
  wait
fi
say "demo done"
