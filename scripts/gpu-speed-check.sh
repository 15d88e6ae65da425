#!/usr/bin/env bash
# The transformer step's fast paths on the lent GPU (device tool), in one call: the tests named by TESTS
# (default: the Triton kernels' tests, compiled), benchmarks/ops_step.py for the ops named by OPS with their
# Triton tiling sweeps (OPS= skips it), benchmarks/transformer_step.py in the modes named by MODES, then one
# profiled step (PROFILE_ARGS). NCU=kernel-regex adds Nsight Compute's speed-of-light, compute and memory
# sections for one launch of the matching Triton kernel at the model's shapes (e.g. NCU=_silu_dwconv).
# NCU_OPS narrows the ops it runs, NCU_ARGS adds ops_step arguments; PROFILE_S=0 skips the profile;
# E2E_RUNS="ours-optimized ours-fp8 diffusers" adds benchmarks/end_to_end.py (480p, 81 frames, 50 steps).
# Carry [".whl"]. Each part has its own time limit, so a slow part cannot starve the next.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/diffusers-*.whl .whl/importlib_metadata-*.whl || exit 1
export PYTHONPATH=/tmp/site:src TRITON_INTERPRET=0
nvidia-smi --query-gpu=name --format=csv,noheader
TESTS=${TESTS:-tests/ops/test_linear_attention_triton.py tests/ops/test_mixffn_conv.py tests/ops/test_fused_model.py}
timeout "${TEST_S:-120}" python3 -m pytest -q --maxfail=5 -p no:cacheprovider $TESTS 2>&1 | tail -8
OPS=${OPS-linear_attention la+qk_norm silu_dwconv_glu}
[ -n "$OPS" ] && timeout "${OPS_S:-120}" python3 benchmarks/ops_step.py --sweep --ops $OPS 2>&1 \
    | grep -v -i warn | tail -34
MODES=${MODES-compiled compiled+plain compiled+fp8 diffusers-compiled}  # MODES= skips the step
[ -n "$MODES" ] && timeout "${BENCH_S:-240}" python3 benchmarks/transformer_step.py --modes $MODES 2>&1 \
    | grep -v -i -e warn -e "originates from" -e "^  File" -e "^    " | grep -v "^$" | tail -20
[ "${PROFILE_S:-80}" != 0 ] && (cd benchmarks && PYTHONPATH=/tmp/site:../src timeout "${PROFILE_S:-80}" \
    python3 profile_step.py ${PROFILE_ARGS:-} --top 20 2>&1 | grep -v -i warn | tail -23)
if [ -n "${E2E_RUNS:-}" ]; then  # e.g. E2E_RUNS="ours-optimized ours-fp8 diffusers": one whole video each
    timeout "${E2E_S:-420}" python3 benchmarks/end_to_end.py --runs $E2E_RUNS 2>&1 \
        | grep -v -i -e warn -e "float32: \[\]" -e "^W1" | tail -8
fi
if [ -n "${NCU:-}" ]; then
    timeout "${NCU_S:-150}" ncu --kernel-name "regex:${NCU}" --launch-count 1 --section SpeedOfLight \
        --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section Occupancy \
        --section LaunchStats python3 benchmarks/ops_step.py --no-compile --warmup 0 --repeats 1 \
        --ops ${NCU_OPS:-linear_attention silu_dwconv_glu} ${NCU_ARGS:-} 2>&1 | grep -v -i warn | grep -E "^  [A-Z]|^    [A-Z]|==PROF==|_kernel" | head -80
fi
