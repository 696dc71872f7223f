#!/usr/bin/env bash
# The hookrelay benchmark (crates/hookrelay-bench). Full run: release build, every scenario at
# full size, results in bench-results/results.json and a table on stdout.
#   scripts/bench.sh                      # everything (a few minutes on 2 cores)
#   scripts/bench.sh --scenario max-sqs   # one scenario; other flags go to hookrelay-bench
#   scripts/bench.sh --quick              # every scenario, small: a smoke test (CI runs it)
#   scripts/bench.sh --profile profiling  # with line tables, to run `perf` on the server
# --quick uses the debug build, so CI needs no release build; its numbers mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true
export NO_PROXY=127.0.0.1,localhost

# --profile profiling: the release build with line tables, for `perf` (not passed on).
profile=release
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) profile=debug; args+=("$1") ;;
    --profile) profile="$2"; shift ;;
    *) args+=("$1") ;;
  esac
  shift
done
case "$profile" in
  debug) cargo build -p hookrelay -p hookrelay-bench ;;
  *) cargo build --profile "$profile" -p hookrelay -p hookrelay-bench ;;
esac
exec "target/$profile/hookrelay-bench" --bin "target/$profile/hookrelay" "${args[@]}"
