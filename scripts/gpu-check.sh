#!/usr/bin/env bash
# GPU readiness in one script, for a machine with a real GPU that may have no Rust toolchain.
#
#   scripts/gpu-check.sh pack          # here (with cargo): build, strip and compress the test and
#                                      # benchmark binaries into .gpucheck/ (git-ignored, ~50 MB)
#   scripts/gpu-check.sh run [OUTDIR]  # there (no cargo needed): run them on the GPU within a time
#                                      # budget, write OUTDIR/gpu-check.json and OUTDIR/gpu-check.log
#
# `run` executes, in this order and each under its own time limit (GPU_CHECK_BUDGET_S, default
# 480 s in all, so the whole check fits in 8 minutes):
#   1. the test suite's GPU-facing binaries on the default adapter (kernels vs f64 references,
#      forced GPU kernel paths, whole-step parity with PyTorch, training, resume);
#   2. the kernel benchmarks (matmul, attention, elementwise, ...);
#   3. the model benchmarks at the paper's batch 128 (attention fused vs unfused at L = 65 and 256,
#      G and D forward/backward, the training step of `tiny` and `cifar32`).
# The JSON holds one object per binary: name, kind (test | bench), exit status, seconds, and for
# tests the passed/failed counts; the log holds their whole output (adapters, figures). Benchmark
# rows are also in OUTDIR/bench-results.jsonl.
#
# The binaries find their fixtures through the path the crate was built in (CARGO_MANIFEST_DIR,
# baked in at build time); `run` links that path to the checkout it runs from when it is missing.
# On the project's lent GPU machine: carry `.gl` (the Vulkan loader debs, see the device tool's
# README) and `.gpucheck`, and start the command with
#   for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; scripts/gpu-check.sh run $OUT
set -uo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
pack_dir="$here/.gpucheck"
# test binaries that exercise the GPU (the others check host code: readers, CLI, metrics maths)
TESTS=(matmul attention gpu_kernel_paths forced_kernels elementwise reduce_softmax layer_norm
       spectral_norm inr adam augment layout patches loop_budget image_ops step_parity training
       autodiff model resume)
BENCHES=(kernels model)

pack() {
    cd "$here" || exit 1
    rm -rf "$pack_dir"
    mkdir -p "$pack_dir"
    local args=()
    for t in "${TESTS[@]}"; do args+=(--test "$t"); done
    # the executables cargo built, by target name (JSON messages; no jq needed)
    local list
    list=$( { cargo test --release --no-run --message-format=json "${args[@]}";
              cargo bench --no-run --message-format=json; } 2>/dev/null |
        WANT="${TESTS[*]} ${BENCHES[*]}" python3 -c '
import json, os, sys
want = set(os.environ["WANT"].split())
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in want:
        kind = "bench" if "bench" in m["target"]["kind"] else "test"
        print(kind, m["target"]["name"], m["executable"])
') || { echo "gpu-check pack: cargo failed" >&2; exit 1; }
    [ -n "$list" ] || { echo "gpu-check pack: no executables built" >&2; exit 1; }
    echo "$here" > "$pack_dir/manifest_dir"
    while read -r kind name exe; do
        strip -o "$pack_dir/$kind-$name" "$exe" && xz -T0 -6 "$pack_dir/$kind-$name" &&
            echo "packed $kind $name ($(du -k "$pack_dir/$kind-$name.xz" | cut -f1) KiB)"
    done <<< "$list"
    echo "in all: $(du -sh "$pack_dir" | cut -f1) in $pack_dir"
}

run() {
    local out="${1:-$here/gpu-check-out}"
    mkdir -p "$out"
    local log="$out/gpu-check.log" json="$out/gpu-check.json"
    : > "$log"
    [ -d "$pack_dir" ] || { echo "gpu-check run: no $pack_dir; run \`$0 pack\` first" >&2; exit 1; }
    # the fixtures are read through the build machine's checkout path
    local built_in
    built_in=$(cat "$pack_dir/manifest_dir")
    if [ "$built_in" != "$here" ] && [ ! -e "$built_in" ]; then
        mkdir -p "$(dirname "$built_in")" && ln -s "$here" "$built_in"
    fi
    local bin=/tmp/gpucheck-bin
    rm -rf "$bin"; mkdir -p "$bin"
    for f in "$pack_dir"/*.xz; do xz -dc "$f" > "$bin/$(basename "$f" .xz)"; chmod +x "$bin/$(basename "$f" .xz)"; done
    export VITGAN_BACKEND="${VITGAN_BACKEND:-vulkan}"
    local budget="${GPU_CHECK_BUDGET_S:-480}" start=$SECONDS
    local results="$here/target/bench-results.jsonl" rows_before=0
    [ -f "$results" ] && rows_before=$(wc -l < "$results")
    # shares of the budget: tests 50 %, kernel benchmarks 20 %, model benchmarks 30 %
    local test_budget=$((budget / 2)) kernels_budget=$((budget / 5))
    local first=1
    echo "[" > "$json"
    record() { # name kind status seconds passed failed
        [ $first = 1 ] || echo "," >> "$json"
        first=0
        printf '  {"name": "%s", "kind": "%s", "status": %s, "seconds": %s, "passed": %s, "failed": %s}' \
            "$1" "$2" "$3" "$4" "$5" "$6" >> "$json"
    }
    for t in "${TESTS[@]}"; do
        local exe="$bin/test-$t"
        [ -x "$exe" ] || continue
        local left=$((start + test_budget - SECONDS))
        if [ "$left" -le 5 ]; then
            echo "== test $t: skipped, the tests' share of the budget is spent" | tee -a "$log"
            record "$t" test '"skipped"' 0 0 0
            continue
        fi
        echo "== test $t (at most ${left} s)" | tee -a "$log"
        local t0=$SECONDS tmp="$out/.last"
        (cd "$here" && timeout "$left" "$exe") > "$tmp" 2>&1
        local status=$?
        cat "$tmp" >> "$log"
        local passed failed
        passed=$(grep -o '[0-9]* passed' "$tmp" | awk '{s+=$1} END {print s+0}')
        failed=$(grep -o '[0-9]* failed' "$tmp" | awk '{s+=$1} END {print s+0}')
        record "$t" test "$status" $((SECONDS - t0)) "$passed" "$failed"
        echo "   status $status, $passed passed, $failed failed, $((SECONDS - t0)) s" | tee -a "$log"
    done
    for b in "${BENCHES[@]}"; do
        local exe="$bin/bench-$b" limit
        [ -x "$exe" ] || continue
        if [ "$b" = kernels ]; then limit=$kernels_budget; else limit=$((start + budget - SECONDS)); fi
        if [ "$limit" -le 5 ]; then
            record "$b" bench '"skipped"' 0 null null
            continue
        fi
        echo "== bench $b (at most ${limit} s)" | tee -a "$log"
        local t0=$SECONDS
        (cd "$here" && timeout "$limit" "$exe" --bench) >> "$log" 2>&1
        record "$b" bench $? $((SECONDS - t0)) null null
    done
    echo "" >> "$json"
    echo "]" >> "$json"
    # this run's benchmark rows only
    [ -f "$results" ] && tail -n +$((rows_before + 1)) "$results" > "$out/bench-results.jsonl"
    rm -f "$out/.last"
    echo "gpu-check: $((SECONDS - start)) s; $json, $log"
}

case "${1:-}" in
    pack) pack ;;
    run) shift; run "$@" ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
esac
