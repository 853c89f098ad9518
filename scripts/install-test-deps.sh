#!/usr/bin/env bash
# Installs everything the end-to-end tests need on a Debian 12 machine (run as root).
# Idempotent: a rerun on a machine that already has everything does no network I/O
# except what npm/pip need when their lock/imports are not satisfied.
#
#   Debian: prometheus (prometheus + promtool, 2.42), prometheus-alertmanager, cmake (pingora build), make (jemalloc build), apache2-utils
#           (htpasswd), curl, openssl, nginx, wrk, chromium, chromium-driver, victoria-metrics (vmalert),
#           haproxy (round-robin over a fleet of gateways)
#   npm:    tests/node (oidc-provider, playwright-core; exact versions in package.json)
#   PyPI:   kubernetes-validate
#
# Packages are installed with --no-install-recommends (so prometheus does not pull in
# prometheus-node-exporter) and with a temporary policy-rc.d so that no package starts a
# service (nginx on :80, prometheus on :9090, node-exporter on :9100) during install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '[install-test-deps] %s\n' "$*" >&2; }
SECONDS=0

export DEBIAN_FRONTEND=noninteractive

# binary -> Debian package providing it
declare -A BIN_PKG=(
  [/usr/bin/prometheus]=prometheus
  [/usr/bin/promtool]=prometheus
  [/usr/bin/cmake]=cmake
  [/usr/bin/make]=make          # jemalloc (tikv-jemalloc-sys) builds with configure + make
  [/usr/bin/htpasswd]=apache2-utils
  [/usr/bin/curl]=curl
  [/usr/bin/openssl]=openssl
  [/usr/sbin/nginx]=nginx
  [/usr/bin/wrk]=wrk
  [/usr/bin/chromium]=chromium
  [/usr/bin/chromedriver]=chromium-driver
  [/usr/bin/prometheus-alertmanager]=prometheus-alertmanager
  [/usr/bin/vmalert]=victoria-metrics  # a tenant's ruler through the gateway (tests/forwarding.rs)
  [/usr/sbin/haproxy]=haproxy          # round-robin over three gateways (tests/fleet.rs)
  [/usr/bin/kubectl]=kubernetes-client # kubectl kustomize of deploy/overlays (tests/deploy.rs)
)

missing_pkgs=()
for bin in "${!BIN_PKG[@]}"; do
  if [[ ! -x "$bin" ]]; then
    pkg="${BIN_PKG[$bin]}"
    [[ " ${missing_pkgs[*]-} " == *" $pkg "* ]] || missing_pkgs+=("$pkg")
  fi
done

pids_of() { pgrep -x "$1" 2>/dev/null | sort || true; }

if ((${#missing_pkgs[@]} == 0)); then
  log "Debian packages: all binaries present, skipping apt"
else
  log "Debian packages to install: ${missing_pkgs[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    log "must run as root to install Debian packages"; exit 1
  fi
  # Services running before the install are not ours to touch.
  declare -A before=()
  for p in prometheus prometheus-alertmanager prometheus-node-exporter node_exporter nginx victoria-metrics haproxy; do
    before[$p]="$(pids_of "$p" | tr '\n' ' ')"
  done

  # Forbid service starts from maintainer scripts (invoke-rc.d honours policy-rc.d).
  created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  cleanup_policy() { if ((created_policy)); then rm -f /usr/sbin/policy-rc.d; fi; }
  trap cleanup_policy EXIT

  apt-get update -qq
  # fonts-liberation: chromium's recommended fonts, so UI screenshots show text.
  apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing_pkgs[@]}" fonts-liberation >/dev/null

  cleanup_policy
  trap - EXIT

  # If a package started a service anyway (no policy-rc.d honoured, systemd present...),
  # stop it so that 9090/9100/80 are free for the tests.
  for svc in prometheus prometheus-alertmanager prometheus-node-exporter nginx victoria-metrics haproxy; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
      log "stopping service $svc started by the package"
      systemctl stop "$svc" || true
      systemctl disable "$svc" >/dev/null 2>&1 || true
    fi
  done
  # Only daemons (re-parented to init) that appeared during the install: never a
  # prometheus that a concurrently running test started as its own child.
  for p in prometheus prometheus-alertmanager prometheus-node-exporter node_exporter nginx victoria-metrics haproxy; do
    for pid in $(pids_of "$p"); do
      ppid="$(ps -o ppid= -p "$pid" 2>/dev/null | tr -d ' ' || true)"
      if [[ " ${before[$p]} " != *" $pid "* && "$ppid" == "1" ]]; then
        log "killing $p (pid $pid) started by the package install"
        kill "$pid" 2>/dev/null || true
      fi
    done
  done
fi

for bin in "${!BIN_PKG[@]}"; do
  [[ -x "$bin" ]] || { log "missing after install: $bin"; exit 1; }
done

# ---- npm: tests/node -------------------------------------------------------------------
NODE_DIR="$ROOT/tests/node"
if [[ -f "$NODE_DIR/package.json" ]]; then
  stamp="$NODE_DIR/node_modules/.package-lock.json"
  if [[ -d "$NODE_DIR/node_modules" && -f "$stamp" && "$stamp" -nt "$NODE_DIR/package-lock.json" ]] \
     && (cd "$NODE_DIR" && node -e 'require.resolve("playwright-core"); require.resolve("oidc-provider/package.json")') 2>/dev/null; then
    log "npm: tests/node up to date"
  else
    log "npm: installing tests/node"
    if [[ -f "$NODE_DIR/package-lock.json" ]]; then
      (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    else
      (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error)
    fi
  fi
fi

# ---- PyPI: kubernetes-validate -----------------------------------------------------------
if python3 -c 'import kubernetes_validate' 2>/dev/null; then
  log "pip: kubernetes-validate present"
else
  log "pip: installing kubernetes-validate"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore kubernetes-validate
fi

log "done in ${SECONDS}s"
