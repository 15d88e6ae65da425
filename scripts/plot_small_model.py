"""Pictures of a small shapes model for docs/: its loss curves and sample frames.

    python scripts/plot_small_model.py MODEL [--out docs/images]

Writes small_model_losses.png (VAE and transformer loss per step, log scale, with a running mean) and
small_model_samples.png (one row per prompt: frames 0, 8, 16, 24 and 32 of a text-to-video sample, and a
long video's chunk boundaries). Needs only Pillow.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

PROMPTS = ["a red circle moving right", "a blue square moving left", "a yellow triangle moving up",
           "a white star moving up and to the right", "a green triangle moving down"]  # fmt: skip


def running_mean(values: list[float], window: int) -> np.ndarray:
    kernel = np.ones(window) / window
    return np.convolve(np.asarray(values, dtype=np.float64), kernel, mode="valid")


def plot_losses(history: dict[str, list[float]], path: Path, size=(900, 330)) -> None:
    """One panel per part, log-scale loss against step: the raw loss pale, a running mean dark."""
    width, height = size
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    panels = [name for name in ("vae", "transformer") if history.get(name)]
    panel_w = width // len(panels)
    for p, name in enumerate(panels):
        losses = np.asarray(history[name], dtype=np.float64)
        box = (p * panel_w + 60, 30, (p + 1) * panel_w - 15, height - 40)  # left, top, right, bottom
        decades = (
            math.floor(math.log10(max(losses.min(), 1e-6)) * 2) / 2,
            math.ceil(math.log10(losses.max()) * 2) / 2,
        )
        left, bottom = box[0], box[3]
        draw.rectangle(box, outline="black")
        for tick in np.arange(decades[0], decades[1] + 1e-9, 0.5):
            y = _point(0, 10**tick, len(losses), box, decades)[1]
            draw.line([left - 4, y, left, y], fill="black")
            draw.text((left - 55, y - 6), f"{10**tick:.3g}", fill="black")
        for step in np.linspace(0, len(losses) - 1, 5):
            x = _point(step, 1, len(losses), box, decades)[0]
            draw.line([x, bottom, x, bottom + 4], fill="black")
            draw.text((x - 12, bottom + 8), f"{int(step)}", fill="black")
        draw.line(
            [_point(i, v, len(losses), box, decades) for i, v in enumerate(losses)], fill=(170, 190, 230)
        )
        window = max(1, len(losses) // 50)
        smooth = running_mean(losses.tolist(), window)
        draw.line([_point(i + window - 1, v, len(losses), box, decades) for i, v in enumerate(smooth)],
                  fill=(20, 50, 150), width=2)  # fmt: skip
        draw.text((left, 8), f"{name} loss (log scale) by step; dark: running mean of {window}", fill="black")
    image.save(path)


def _point(step, value, steps, box, decades) -> tuple[float, float]:
    """Pixel position of (step, loss) in a panel `box` whose y axis spans the log10 range `decades`."""
    left, top, right, bottom = box
    x = left + (right - left) * step / max(steps - 1, 1)
    y = bottom - (bottom - top) * (math.log10(max(value, 1e-6)) - decades[0]) / (decades[1] - decades[0])
    return x, y


def sample_strip(frames: np.ndarray, picks: list[int], scale: int = 1) -> Image.Image:
    """Frames [F, H, W, 3] in [0, 1] -> the picked frames side by side, 4 px apart."""
    tiles = [Image.fromarray((frames[i] * 255).round().astype(np.uint8)) for i in picks]
    w, h = tiles[0].width * scale, tiles[0].height * scale
    strip = Image.new("RGB", (len(tiles) * (w + 4) - 4, h), "white")
    for i, tile in enumerate(tiles):
        strip.paste(tile.resize((w, h), Image.NEAREST), (i * (w + 4), 0))
    return strip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from sana_video import LongSanaVideoPipeline, SanaVideoPipeline
    from sana_video.pipelines.text import motion_prompt

    model, out = Path(args.model), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_losses(json.loads((model / "losses.json").read_text()), out / "small_model_losses.png")

    defaults = json.loads((model / "sana_video.json").read_text())
    common = dict(height=defaults["height"], width=defaults["width"], negative_prompt=defaults["negative_prompt"],
                  num_inference_steps=defaults["steps"], guidance_scale=defaults["guidance"],
                  complex_human_instruction=None, output_type="np")  # fmt: skip
    pipe = SanaVideoPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    rows, labels = [], []
    picks = [0, 8, 16, 24, 32]
    for prompt in PROMPTS:
        video = pipe(prompt=motion_prompt(prompt, defaults["motion_score"]), frames=defaults["frames"],
                     use_resolution_binning=False, generator=torch.Generator().manual_seed(args.seed),
                     **common).frames[0]  # fmt: skip
        rows.append(sample_strip(video, picks, scale=2))
        labels.append(f'"{prompt}", frames {", ".join(map(str, picks))}')
    long = LongSanaVideoPipeline.from_pretrained(model)
    long.set_progress_bar_config(disable=True)
    chunk = defaults["chunk_frames"]
    ways = ["a red circle moving right slowly"] * 2 + ["a red circle moving down slowly"] * 2
    frames = 1 + 4 * (4 * chunk - 1)
    video = long(prompt=[motion_prompt(w, defaults["motion_score"]) for w in ways], frames=frames,
                 chunk_frames=chunk, sampler=defaults.get("sampler", "few-step"),
                 generator=torch.Generator().manual_seed(args.seed), **common).frames[0]  # fmt: skip
    bounds = [0] + [1 + 4 * (chunk * k - 1) for k in range(1, 4)] + [frames - 1]  # chunk starts, last
    rows.append(sample_strip(video, bounds, scale=2))
    labels.append(
        f"long, 4 chunks, right then down at the middle boundary: frames {', '.join(map(str, bounds))}"
    )

    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, sum(r.height + 22 for r in rows)), "white")
    draw, y = ImageDraw.Draw(sheet), 0
    for row, label in zip(rows, labels):
        draw.text((2, y + 4), label, fill="black")
        sheet.paste(row, (0, y + 20))
        y += row.height + 22
    sheet.save(out / "small_model_samples.png")
    print("wrote", out / "small_model_losses.png", "and", out / "small_model_samples.png")


if __name__ == "__main__":
    main()
