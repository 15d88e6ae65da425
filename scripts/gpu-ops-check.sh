#!/usr/bin/env bash
# The Triton kernels compiled on the lent GPU (device tool): their tests at the tests' shapes (the same
# tests CI runs through the interpreter), then benchmarks/ops_step.py at the 2B model's 480p shapes.
# Carry [".whl"] (diffusers, which the tests' conftest imports).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/diffusers-*.whl .whl/importlib_metadata-*.whl || exit 1
export PYTHONPATH=/tmp/site:src TRITON_INTERPRET=0
nvidia-smi --query-gpu=name --format=csv,noheader
timeout "${TEST_S:-150}" python3 -m pytest -q -x -p no:cacheprovider tests/ops 2>&1 | tail -25
timeout "${BENCH_S:-120}" python3 benchmarks/ops_step.py ${BENCH_ARGS:-} 2>&1 | grep -v Warning | tail -30
