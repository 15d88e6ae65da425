#!/usr/bin/env bash
# One ≤10-minute slice of `sana-video train small` on the lent GPU (device tool). Repeat until it prints
# "FINISHED"; each slice resumes from outputs/shapes/.work. What a slice leaves is also copied to $OUT
# (the finished VAE as a tar, the transformer checkpoint slimmed by scripts/carry_checkpoint.py in 15 MB
# parts) so a lost machine can be restarted from them: put them in .carry/ here and carry it. SWEEP=1 first trains VAE variants side by side
# (scripts/vae_sweep.py) and keeps one that holds every colour.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/diffusers-*.whl .whl/importlib_metadata-*.whl || exit 1
export PYTHONPATH=/tmp/site:src
out=outputs/shapes
if [ -d .carry ] && [ ! -d $out/.work ]; then  # restart from a slice's leftovers (files_at/* put in .carry/)
    mkdir -p $out/.work/transformer
    [ -f .carry/vae_model.tar ] && tar -xf .carry/vae_model.tar -C $out/.work
    [ -f .carry/vae_choice.json ] && cp .carry/vae_choice.json $out/.work/  # the sweep that chose it
    if ls .carry/ckpt_slim.part* >/dev/null 2>&1; then
        cat .carry/ckpt_slim.part* > /tmp/slim.pt
        python3 scripts/carry_checkpoint.py unpack /tmp/slim.pt $out/.work/transformer/checkpoint.pt
    fi
fi
nvidia-smi --query-gpu=name --format=csv,noheader
start=$SECONDS
if [ -n "${SWEEP:-}" ] && [ ! -f $out/.work/vae_model/losses.json ]; then
    VAE_BUDGET=${VAE_BUDGET:-300} timeout 560 python3 scripts/vae_sweep.py $out 2>&1 | grep -v Warning | tail -16
    cp $out/.work/vae_choice.json "$OUT/" 2>/dev/null
    # no variant kept every colour: a transformer trained on it would not draw that colour (builds 3-4)
    [ -f $out/.work/vae_model/losses.json ] || { echo "no VAE chosen; stopping"; exit 3; }
fi
SLICE=$(( ${SLICE:-540} - (SECONDS - start) ))
[ "$SLICE" -gt 60 ] && timeout -s INT "$SLICE" python3 -m sana_video train small --out $out --workers 14 2>&1 | tr '\r' '\n' \
    | awk '/step\/s|s\/step/ { n++; if (n % 100 == 0) print; next } { print }' | tail -40
if [ -f $out/losses.json ]; then
    echo FINISHED
    (cd $out && tar --exclude=.work -cf - . | split -b 15M - "$OUT/model.tar.part" && ls -la "$OUT")
    if [ -n "${EVALUATE:-}" ]; then
        timeout "$EVALUATE" python3 scripts/evaluate_small_model.py $out --device cuda --seeds 2 2>&1 \
            | grep -v Warning | tail -40
    fi
else
    # What a fresh machine needs to go on (carry ≤ 64 MiB with .whl): the VAE, and the checkpoint with
    # Adam's moments in bf16 (50 MB instead of 67).
    [ -f $out/.work/vae_model/losses.json ] && tar -cf "$OUT/vae_model.tar" -C $out/.work vae_model
    if [ -f $out/.work/transformer/checkpoint.pt ]; then
        python3 scripts/carry_checkpoint.py pack $out/.work/transformer/checkpoint.pt /tmp/slim.pt
        split -b 15M /tmp/slim.pt "$OUT/ckpt_slim.part"
    fi
    ls -la "$OUT"
fi
