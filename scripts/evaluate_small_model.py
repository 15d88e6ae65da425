"""Does a small shapes model mean what it is told? Meaning grid, image start and long mode.

    python scripts/evaluate_small_model.py outputs/shapes [--seeds 2] [--directions 8] [--device cpu]

Prints one line per check and a summary; the bundled model's tests make the same checks on part of the grid.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from sana_video.pipelines.text import COMPLEX_HUMAN_INSTRUCTION, motion_prompt
from sana_video.train.data import HELD_OUT, ClipSpec, ObjectSpec, render
from sana_video.train.evaluate import (
    centroids,
    colour_error,
    meaning_grid,
    meaning_scores,
    moves,
    prompt_for,
    psnr,
)

PEOPLE_PROMPTS = [("a red circle moving right", "red", "right"), ("a green square moving down", "green", "down"),
                  ("a purple star moving left", "purple", "left"), ("a cyan diamond moving up", "cyan", "up")]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--seeds", default="2", help="comma-separated (default: 2, as docs/TRAINING.md)")
    parser.add_argument("--directions", type=int, default=8, help="directions per colour-shape pair (8: all)")
    parser.add_argument("--steps", type=int, help="(default: the model's sana_video.json)")
    parser.add_argument("--guidance", type=float, help="(default: the model's sana_video.json)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--speed", default="slowly", choices=["slowly", "quickly"])
    args = parser.parse_args()
    from sana_video import LongSanaVideoPipeline, SanaImageToVideoPipeline, SanaVideoPipeline

    torch.set_num_threads(2)
    defaults = json.loads((Path(args.model) / "sana_video.json").read_text())
    chi = COMPLEX_HUMAN_INSTRUCTION if defaults.get("complex_human_instruction", True) else None
    size, frames = defaults["height"], defaults["frames"]
    seeds = [int(s) for s in args.seeds.split(",")]
    common = dict(negative_prompt="", num_inference_steps=args.steps or defaults["steps"],
                  guidance_scale=args.guidance or defaults["guidance"],
                  complex_human_instruction=chi, height=size, width=size)  # fmt: skip
    colours = Path(args.model) / "vae_colours.json"
    if colours.exists():  # how far the VAE moves each colour (builds 3-4 lost green: 0.55)
        print("VAE colour error:", {k: round(v, 2) for k, v in json.loads(colours.read_text()).items()})
    t2v = SanaVideoPipeline.from_pretrained(args.model).to(args.device)
    t2v.set_progress_bar_config(disable=True)

    def generate(prompt, seed):
        return t2v(prompt=motion_prompt(prompt, 30), frames=frames, output_type="np", use_resolution_binning=False,
                   generator=torch.Generator().manual_seed(seed), **common).frames[0]  # fmt: skip

    start = time.perf_counter()
    rows = meaning_scores(generate, meaning_grid(args.directions), seeds, args.speed)
    seconds = (time.perf_counter() - start) / len(rows)
    for r in rows:
        held = " (held out)" if (r["colour"], r["shape"]) in HELD_OUT else ""
        print(f"{r['colour']:>7} {r['shape']:<8} {r['direction']:<22} seed {r['seed']}: moves {r['moves']!s:5} "
              f"opposite {r['moves_opposite']!s:5} colour error {r['colour_error']:.2f}{held}")  # fmt: skip
    rate = np.mean([r["moves"] for r in rows])
    print(f"meaning: {rate:.0%} move as prompted, {np.mean([r['moves_opposite'] for r in rows]):.0%} against; "
          f"{seconds:.1f} s a video ({args.device})")  # fmt: skip

    # Prompts as people write them: no speed, no background (the README's demo prompt first).
    for prompt, colour, direction in PEOPLE_PROMPTS:
        for seed in seeds:
            frames_ = generate(prompt, seed)
            print(f"{prompt!r} seed {seed}: moves {moves(frames_, colour, direction)!s:5} "
                  f"colour error {colour_error(frames_, colour):.2f}")  # fmt: skip

    # Image start: a rendered first frame; frame 0 must match it and the object must move as prompted.
    i2v = SanaImageToVideoPipeline.from_pretrained(args.model).to(args.device)
    i2v.set_progress_bar_config(disable=True)
    image_rows = []
    for seed, (colour, shape, direction, x, y) in enumerate([("red", "circle", "right", 0.25, 0.5),
                                                             ("blue", "square", "down", 0.5, 0.25),
                                                             ("green", "star", "left", 0.75, 0.5)]):  # fmt: skip
        spec = ClipSpec((ObjectSpec(colour, shape, direction, "quickly", (x, y), 0.12),), "plain", 0.3)
        image = ((render(spec, 1, size, size)[:, 0].permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)
        video = i2v(image=image, prompt=motion_prompt(prompt_for(colour, shape, direction), 30), frames=frames,
                    output_type="np", use_resolution_binning=False, generator=torch.Generator().manual_seed(seed),
                    **common).frames[0]  # fmt: skip
        image_rows.append((psnr(video[0], image), moves(video, colour, direction)))
        print(f"image start {colour} {shape} {direction}: frame 0 PSNR {image_rows[-1][0]:.1f} dB, "
              f"moves {image_rows[-1][1]}")  # fmt: skip

    # Long mode: 4 chunks; one prompt, then a switch at a chunk boundary.
    long = LongSanaVideoPipeline.from_pretrained(args.model).to(args.device)
    long.set_progress_bar_config(disable=True)
    chunk = defaults.get("chunk_frames", 3)
    long_frames = 4 * (4 * chunk - 1) + 1  # 4 chunks of `chunk` latent frames
    for name, prompts in [("steady", [prompt_for("red", "circle", "right", "slowly")] * 4),
                          ("switch", [prompt_for("red", "circle", "right", "slowly")] * 2
                           + [prompt_for("red", "circle", "down", "slowly")] * 2)]:  # fmt: skip
        video = long(prompt=[motion_prompt(p, 30) for p in prompts], frames=long_frames, chunk_frames=chunk,
                     sampler="euler", shift=defaults.get("shift", 3.0), generator=torch.Generator().manual_seed(0),
                     **common).frames[0]  # fmt: skip
        track = centroids(video, "red")
        bounds = [0, 1 + 4 * (chunk - 1)] + [1 + 4 * (chunk * k - 1) for k in range(2, 5)]
        parts = [track[a:b] for a, b in itertools.pairwise(bounds)]
        steps = [np.nanmean(p[-2:], 0) - np.nanmean(p[:2], 0) for p in parts]
        drift = [colour_error(video[a:b], "red") for a, b in itertools.pairwise(bounds)]
        print(f"long {name}: per-chunk displacement {[np.round(s, 2).tolist() for s in steps]}, "
              f"colour error per chunk {np.round(drift, 2).tolist()}")  # fmt: skip


if __name__ == "__main__":
    main()
