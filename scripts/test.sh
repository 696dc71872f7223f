#!/usr/bin/env bash
# Runs every test: formatting and lints, the Rust tests, then the end-to-end tests (real
# `hookrelay serve` processes, moto, boto3, and the official Stream SDKs). Fails on the first
# failure. Extra arguments go to pytest (e.g. `-k sqs`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

# Nothing may leave the machine: no EC2 metadata lookups from any AWS SDK.
export AWS_EC2_METADATA_DISABLED=true
export NO_PROXY=127.0.0.1,localhost

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
cargo build --bin hookrelay
# A test that hangs fails after 5 minutes instead of holding CI until its own limit.
.venv/bin/python -m pytest tests -q --timeout 300 "$@"
# The benchmark in small sizes: it asserts that every event is delivered, not speed.
bash scripts/bench.sh --quick --out target/bench-quick.json
