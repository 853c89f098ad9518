#!/usr/bin/env bash
# The project's test command: installs the test dependencies (Debian, npm, PyPI), then runs
# `cargo fmt --check`, `cargo clippy --workspace --all-targets -- -D warnings` and
# `cargo test --workspace` (debug build; dependencies are built at opt-level 1, see Cargo.toml).
# Every step runs even when an
# earlier one failed (except the install), a summary is printed at the end, and the exit
# status is non-zero if any step failed.
#
# Environment: WHIZARD_TEST_TIMEOUT_SCALE stretches the e2e harness deadlines on a slow
# machine; extra arguments are passed to `cargo test` (e.g. `scripts/test.sh harness`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

LOG_DIR="$(mktemp -d)"
trap 'rm -rf "$LOG_DIR"' EXIT

summary=()
failed=0

step() {
  local name="$1"; shift
  local start=$SECONDS rc=0
  printf '\n==> %s: %s\n' "$name" "$*"
  "$@" || rc=$?
  local took=$((SECONDS - start))
  if ((rc == 0)); then
    summary+=("PASS  $name (${took}s)")
  else
    summary+=("FAIL  $name (exit $rc, ${took}s)")
    failed=1
  fi
  return 0
}

printf '==> install-test-deps\n'
if ! bash "$ROOT/scripts/install-test-deps.sh"; then
  echo "FAIL: scripts/install-test-deps.sh" >&2
  exit 1
fi

step "cargo fmt" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings

run_tests() {
  set -o pipefail
  cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$LOG_DIR/test.log"
}
step "cargo test" run_tests "$@"

# Totals over every `test result:` line of cargo test.
read -r passed failed_tests ignored < <(
  awk '/^test result:/ {
         for (i = 1; i <= NF; i++) {
           if ($(i+1) ~ /^passed/)  p += $i
           if ($(i+1) ~ /^failed/)  f += $i
           if ($(i+1) ~ /^ignored/) g += $i
         }
       }
       END { printf "%d %d %d\n", p, f, g }' "$LOG_DIR/test.log" 2>/dev/null || echo "0 0 0"
)

printf '\n==> summary\n'
printf '  %s\n' "${summary[@]}"
printf 'tests: %d passed, %d failed, %d skipped\n' "$passed" "$failed_tests" "$ignored"
if ((failed)); then
  echo "FAILED" >&2
  exit 1
fi
