#!/usr/bin/env bash
# One ≤10-minute slice of `sana-video train small` on the lent GPU (device tool). Repeat until it prints
# "FINISHED"; each slice resumes from outputs/shapes/.work. What a slice leaves is also copied to $OUT
# (the finished VAE, the transformer checkpoint in 15 MB parts) so a lost machine can be restarted from
# them: put them in .carry/ here and carry it. SWEEP=1 first trains VAE variants side by side
# (scripts/vae_sweep.py) and keeps one that holds every colour.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/diffusers-*.whl .whl/importlib_metadata-*.whl || exit 1
export PYTHONPATH=/tmp/site:src
out=outputs/shapes
if [ -d .carry ] && [ ! -d $out/.work ]; then  # restart from a slice's leftovers
    mkdir -p $out/.work/vae_model $out/.work/transformer
    cp .carry/vae_model/* $out/.work/vae_model/ 2>/dev/null
    ls .carry/ckpt.part* >/dev/null 2>&1 && cat .carry/ckpt.part* > $out/.work/transformer/checkpoint.pt
fi
nvidia-smi --query-gpu=name --format=csv,noheader
start=$SECONDS
if [ -n "${SWEEP:-}" ] && [ ! -f $out/.work/vae_model/losses.json ]; then
    VAE_BUDGET=${VAE_BUDGET:-380} timeout 560 python3 scripts/vae_sweep.py $out 2>&1 | grep -v Warning | tail -16
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
    if [ ! -d .carry/vae_model ]; then mkdir -p "$OUT/vae_model" && cp $out/.work/vae_model/* "$OUT/vae_model/"; fi
    [ -f $out/.work/transformer/checkpoint.pt ] && split -b 15M $out/.work/transformer/checkpoint.pt "$OUT/ckpt.part"
    ls -la "$OUT"
fi
