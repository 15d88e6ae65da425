"""Train a few VAE variants of the small model side by side on one GPU, keep the best.

    python scripts/vae_sweep.py outputs/shapes        # then: sana-video train small --out outputs/shapes

Each variant is `build_vae` with one recipe change, in its own process. Of the variants that keep every
colour (`reconstruction_colour_errors` within MAX_COLOUR_ERROR), the one with the best reconstruction PSNR
on fresh 33-frame clips becomes outputs/shapes/.work/vae_model, which `train small` then uses; if none
does, none is chosen and the script exits with status 3. The results are written beside it
(vae_choice.json).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

from sana_video.train.small_model import MAX_COLOUR_ERROR

# name: changes to the recipe's VAE settings (batch 8, lr 3e-4, 48×48 crops of 17-frame clips, 16 latent
# channels, no noisy backgrounds, object weight 12). Unweighted, builds 3-5's VAEs (16 or 8 channels, with
# or without noisy backgrounds) lost green and cyan; weighted by chroma (10), they kept every colour but
# white (docs/TRAINING.md).
VARIANTS = {
    "z16_object12": {},
    "z8_object12": {"latent_channels": 8},
    "z8_object6": {"latent_channels": 8, "vae_object_weight": 6.0},
}
BUDGET = float(os.environ.get("VAE_BUDGET", 400))  # seconds of training per variant (they run side by side)
DEVICE = os.environ.get("SWEEP_DEVICE", "cuda")


# SWEEP_SMOKE=1: 32×32 clips and 2 steps a variant, to check the whole flow on a CPU in a minute.
SMOKE = os.environ.get("SWEEP_SMOKE") == "1"


def recipe_for(name: str, steps: int):
    from sana_video.train.small_model import SmallModelRecipe

    base = SmallModelRecipe(size=32, frames=9, vae_frames=5, vae_crop=None) if SMOKE else SmallModelRecipe()
    return replace(base, vae=replace(base.vae, steps=steps, num_workers=3, progress=False), **VARIANTS[name])


def steps_in_budget(name: str, folder: Path) -> int:
    """Steps that fit BUDGET, from timing 30 steps of this variant (while the others run too)."""
    if SMOKE:
        return 2
    import tempfile
    import time

    from sana_video.train.components import make_vae
    from sana_video.train.data import ShapesDataset
    from sana_video.train.loop import train
    from sana_video.train.objectives import VAEObjective

    recipe = recipe_for(name, 30)
    vae = make_vae(recipe.latent_channels, recipe.vae_base_dim, spatial=recipe.vae_spatial).to(DEVICE)
    data = ShapesDataset(
        frames=recipe.vae_frames,
        height=recipe.size,
        width=recipe.size,
        crop=recipe.vae_crop,
        backgrounds=recipe.vae_backgrounds,
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train(vae, VAEObjective(vae, object_weight=recipe.vae_object_weight), data, recipe.vae, tmp)
    rate = 30 / (time.perf_counter() - start)
    print(name, f"{rate:.2f} steps/s", flush=True)
    return max(100, int(BUDGET * rate / 100) * 100)


def one(name: str, folder: str) -> None:
    import torch

    from sana_video.train.data import ShapesDataset
    from sana_video.train.small_model import build_vae

    recipe = recipe_for(name, steps_in_budget(name, Path(folder)))
    vae, history = build_vae(Path(folder) / "vae_model", recipe, DEVICE)
    scores = {}
    for frames in (9, recipe.frames):  # the trained length and the pipelines' length
        # on the clips the transformer learns (and the pipelines decode): its backgrounds
        clips = ShapesDataset(frames=frames, height=recipe.size, width=recipe.size, seed=7,
                              backgrounds=recipe.backgrounds)  # fmt: skip
        x = torch.stack([clips[j][0] for j in range(16)]).to(DEVICE)
        with torch.no_grad():
            y = vae.decode(vae.encode(x).latent_dist.mode()).sample
        per_frame = 10 * torch.log10(4 / (y - x).pow(2).mean(dim=(0, 1, 3, 4)))
        scores[frames] = (10 * torch.log10(4 / (y - x).pow(2).mean())).item()
        print(
            name,
            frames,
            "frames: PSNR per 4th frame",
            [round(v, 1) for v in per_frame[::4].tolist()],
            flush=True,
        )
    psnr = scores[recipe.frames]
    result = {
        "name": name,
        "psnr": psnr,
        "psnr_9": scores[9],
        "final_loss": sum(history[-50:]) / 50,
        "colours": json.loads((Path(folder) / "vae_model" / "colours.json").read_text()),
        "recipe": asdict(recipe),
    }
    (Path(folder) / "result.json").write_text(json.dumps(result, default=str))


def main(target: str) -> None:
    root = Path(target).parent / "vae_sweep"
    procs = [
        subprocess.Popen([sys.executable, __file__, "--one", name, str(root / name)]) for name in VARIANTS
    ]
    for p in procs:
        p.wait()
    results = [
        json.loads((root / n / "result.json").read_text())
        for n in VARIANTS
        if (root / n / "result.json").exists()
    ]
    for r in sorted(results, key=lambda r: -r["psnr"]):
        worst = max(r["colours"], key=r["colours"].get)
        print(f"{r['name']:20s} {r['recipe']['vae']['steps']:5d} steps PSNR 33f {r['psnr']:6.2f} dB  "
              f"9f {r['psnr_9']:6.2f} dB  final loss {r['final_loss']:.4f}  worst colour {worst} "
              f"{r['colours'][worst]:.2f}")  # fmt: skip
    work = Path(target) / ".work"
    work.mkdir(parents=True, exist_ok=True)
    (work / "vae_choice.json").write_text(json.dumps(results, indent=1, default=str))
    # A VAE that loses a colour loses it for good (builds 3-4): the sharpest VAE of those that keep every one.
    keep = [r for r in results if max(r["colours"].values()) <= MAX_COLOUR_ERROR]
    if not keep:
        print(f"no variant keeps every colour within {MAX_COLOUR_ERROR}: none chosen")
        sys.exit(3)
    best = max(keep, key=lambda r: r["psnr"])
    shutil.rmtree(work / "vae_model", ignore_errors=True)
    shutil.copytree(root / best["name"] / "vae_model", work / "vae_model")
    print("chose", best["name"])


if __name__ == "__main__":
    if sys.argv[1] == "--one":
        one(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1])
