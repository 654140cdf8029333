#!/usr/bin/env bash
# Fuzzes every target of fuzz/ with cargo-fuzz (libFuzzer, nightly toolchain):
#   ./scripts/fuzz.sh [executions per target, default 3000000] [target ...]
# New inputs that add coverage go to fuzz/corpus/<target>/ (minimised at the end and
# committed; `cargo test` replays them with the seeds). A crash stops the script with
# the input saved under fuzz/artifacts/<target>/. Summary: target/fuzz/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3000000}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request response config flow lists arguments)
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz --version 0.13.2
# The workspace's release profile uses LTO, which breaks the coverage instrumentation;
# no sanitizer: the code under test is safe Rust (panics and aborts are what we look for).
export CARGO_PROFILE_RELEASE_LTO=false
mkdir -p target/fuzz
summary=target/fuzz/summary.txt
touch "$summary"
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  log="target/fuzz/$target.log"
  echo "== fuzz $target ($runs executions)"
  cargo +nightly fuzz run -s none "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -runs="$runs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 2>&1 | tee "$log" | grep -E '^Done|^#[0-9]+.*(pulse|DONE)' || true
  grep -q '^Done' "$log" || { echo "fuzz $target did not finish: see $log"; exit 1; }
  cargo +nightly fuzz cmin -s none "$target" "fuzz/corpus/$target" > "target/fuzz/$target-cmin.log" 2>&1
  sed -i "/^$target: /d" "$summary"
  echo "$target: $(grep '^Done' "$log"), corpus $(ls "fuzz/corpus/$target" | wc -l) inputs, seeds $(ls "fuzz/seeds/$target" | wc -l)" | tee -a "$summary"
done
