#!/usr/bin/env bash
# Runs one fuzz target for a while (default 600 s), single process, at low priority.
#   fuzz/run.sh ddl|decode_file|decode_kafka [seconds] [extra libFuzzer flags...]
# New inputs go to fuzz/corpus/<target> (git-ignored); fuzz/seeds/<target> is read only.
# A crash is saved in fuzz/artifacts/<target>/ and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: fuzz/run.sh <target> [seconds] [libFuzzer flags...]}
seconds=${2:-600}
shift $(( $# >= 2 ? 2 : 1 ))
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir/fuzz-target}
# ASan's quarantine of freed memory (use-after-free detection, for unsafe code) makes the
# decoders' large per-input allocations 2-3x slower; overflows are still detected.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=0}
mkdir -p "fuzz/corpus/$target"
exec nice -n 10 cargo +nightly fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
  -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "$@"
