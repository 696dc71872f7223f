#!/usr/bin/env bash
# The hookrelay benchmark (crates/hookrelay-bench). Full run: release build, every scenario at
# full size, results in bench-results/results.json and a table on stdout.
#   scripts/bench.sh                      # everything (a few minutes on 2 cores)
#   scripts/bench.sh --scenario max-sqs   # one scenario; other flags go to hookrelay-bench
#   scripts/bench.sh --quick              # every scenario, small: a smoke test (CI runs it)
# --quick uses the debug build, so CI needs no release build; its numbers mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true
export NO_PROXY=127.0.0.1,localhost

profile=release
for arg in "$@"; do
  [ "$arg" = "--quick" ] && profile=debug
done
if [ "$profile" = release ]; then
  cargo build --release --bin hookrelay --bin hookrelay-bench
else
  cargo build --bin hookrelay --bin hookrelay-bench
fi
exec "target/$profile/hookrelay-bench" --bin "target/$profile/hookrelay" "$@"
