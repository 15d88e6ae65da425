#!/usr/bin/env bash
# The transformer step's fast paths on the lent GPU (device tool), in one call: the CUDA-only code paths'
# tests (bf16 linear attention on the tensor cores, the compile-only depthwise conv), then
# benchmarks/transformer_step.py in the modes named by MODES, then one profiled step (PROFILE_ARGS).
# Carry [".whl"]. Each part has its own time limit, so a slow part cannot starve the next.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/diffusers-*.whl .whl/importlib_metadata-*.whl || exit 1
export PYTHONPATH=/tmp/site:src TRITON_INTERPRET=0
nvidia-smi --query-gpu=name --format=csv,noheader
timeout "${TEST_S:-90}" python3 -m pytest -q -x -p no:cacheprovider tests/ops/test_linear_attention.py \
    tests/ops/test_mixffn_conv.py -k "bf16 or shifted" 2>&1 | tail -8
MODES=${MODES:-compiled compiled+shifted compiled+shifted+fp8 diffusers-compiled}
timeout "${BENCH_S:-240}" python3 benchmarks/transformer_step.py --modes $MODES 2>&1 \
    | grep -v -i -e warn -e "originates from" -e "^  File" -e "^    " | grep -v '^$' | tail -16
(cd benchmarks && PYTHONPATH=/tmp/site:../src timeout "${PROFILE_S:-80}" python3 profile_step.py \
    ${PROFILE_ARGS:---shifted} --top 20 2>&1 | grep -v -i warn | tail -23)
