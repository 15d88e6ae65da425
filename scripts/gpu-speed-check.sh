#!/usr/bin/env bash
# The transformer step's fast paths on the lent GPU (device tool), in one call: the CUDA-only code paths'
# tests (the Triton linear attention compiled, bf16 linear attention on the tensor cores, the compile-only
# depthwise conv), then benchmarks/ops_step.py for the ops named by OPS (with the linear attention's tiling
# sweep), then benchmarks/transformer_step.py in the modes named by MODES, then one profiled step
# (PROFILE_ARGS).
# Carry [".whl"]. Each part has its own time limit, so a slow part cannot starve the next.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/diffusers-*.whl .whl/importlib_metadata-*.whl || exit 1
export PYTHONPATH=/tmp/site:src TRITON_INTERPRET=0
nvidia-smi --query-gpu=name --format=csv,noheader
timeout "${TEST_S:-90}" python3 -m pytest -q -x -p no:cacheprovider tests/ops/test_linear_attention_triton.py \
    tests/ops/test_linear_attention.py tests/ops/test_mixffn_conv.py -k "triton or bf16 or shifted" 2>&1 | tail -8
OPS=${OPS:-linear_attention}
[ -n "$OPS" ] && timeout "${OPS_S:-120}" python3 benchmarks/ops_step.py --sweep --ops $OPS 2>&1 \
    | grep -v -i warn | tail -16
MODES=${MODES:-compiled compiled+la compiled+la+shifted compiled+la+dwconv compiled+la+fp8 diffusers-compiled}
timeout "${BENCH_S:-240}" python3 benchmarks/transformer_step.py --modes $MODES 2>&1 \
    | grep -v -i -e warn -e "originates from" -e "^  File" -e "^    " | grep -v "^$" | tail -20
(cd benchmarks && PYTHONPATH=/tmp/site:../src timeout "${PROFILE_S:-80}" python3 profile_step.py \
    ${PROFILE_ARGS:---force la} --top 20 2>&1 | grep -v -i warn | tail -23)
