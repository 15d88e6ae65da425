"""Train a few VAE variants of the small model side by side on one GPU, keep the best.

    python scripts/vae_sweep.py outputs/shapes        # then: sana-video train small --out outputs/shapes

Each variant is `build_vae` with one recipe change, in its own process; the one with the best
reconstruction PSNR on fresh 33-frame clips becomes outputs/shapes/.work/vae_model, which
`train small` then uses. Its recipe is written beside it (vae_choice.json).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

VARIANTS = {  # name: (VAE learning rate, latent channels)
    "lr3e-4_c8": (3e-4, 8),
    "lr1e-3_c8": (1e-3, 8),
    "lr3e-4_c16": (3e-4, 16),
}


def recipe_for(name: str):
    from sana_video.train.small_model import SmallModelRecipe

    lr, channels = VARIANTS[name]
    base = SmallModelRecipe()
    return SmallModelRecipe(
        latent_channels=channels, vae=replace(base.vae, lr=lr, num_workers=4, progress=False)
    )


def one(name: str, folder: str) -> None:
    import torch

    from sana_video.train.data import ShapesDataset
    from sana_video.train.small_model import build_vae

    recipe = recipe_for(name)
    vae, history = build_vae(Path(folder) / "vae_model", recipe, "cuda")
    clips = ShapesDataset(frames=recipe.frames, height=recipe.size, width=recipe.size, seed=7)
    errors = []
    with torch.no_grad():
        for i in range(0, 32, 8):
            x = torch.stack([clips[j][0] for j in range(i, i + 8)]).cuda()
            y = vae.decode(vae.encode(x).latent_dist.mode()).sample
            errors.append((y - x).pow(2).mean().item())
    psnr = 10 * torch.log10(torch.tensor(4.0 / (sum(errors) / len(errors)))).item()
    result = {"name": name, "psnr": psnr, "final_loss": sum(history[-50:]) / 50, "recipe": asdict(recipe)}
    (Path(folder) / "result.json").write_text(json.dumps(result, default=str))
    print(name, f"PSNR {psnr:.2f} dB, loss {result['final_loss']:.4f}", flush=True)


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
        print(f"{r['name']:12s} PSNR {r['psnr']:6.2f} dB  final loss {r['final_loss']:.4f}")
    best = max(results, key=lambda r: r["psnr"])
    work = Path(target) / ".work"
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "vae_model", ignore_errors=True)
    shutil.copytree(root / best["name"] / "vae_model", work / "vae_model")
    (work / "vae_choice.json").write_text(json.dumps(results, indent=1, default=str))
    print("chose", best["name"])


if __name__ == "__main__":
    if sys.argv[1] == "--one":
        one(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1])
