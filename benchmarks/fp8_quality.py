"""FP8's quality cost, measured on the project's small model (the bundled one), on any device.

    python benchmarks/fp8_quality.py                    # CPU: 9 prompts × 1 seed, ~4 minutes
    python benchmarks/fp8_quality.py --directions 3 --seeds 2,3

The same videos (same prompts, seeds, steps and guidance) with the transformer in fp32, in bf16, and in
bf16 with every block matmul in float8 e4m3 (`pipe.optimize(fp8=True)`: per-row weight scales, per-token
activation scales). Reports, per prompt and overall:

- the transformer output's relative error, fp8 against bf16, on every denoising step's input (the inputs
  the bf16 run saw), and bf16 against fp32 on the same inputs for scale;
- the PSNR of the decoded videos, fp8 against bf16 and bf16 against fp32;
- whether each video still moves its object as prompted (`train.evaluate.moves`).

On a CPU the float8 matmul is emulated (`ops.fp8_linear` naive: fp8 values and scales, fp32 products); a
Hopper GPU's `torch._scaled_mm` rounds the same operands and sums in another order. The small model is
not the 2B one: its error says how float8 treats a trained SANA-Video transformer, not the big model's.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from pathlib import Path

import numpy as np
import torch

from sana_video import SanaVideoPipeline
from sana_video.cli import _cpu_has_native_bf16
from sana_video.pipelines.text import COMPLEX_HUMAN_INSTRUCTION, motion_prompt
from sana_video.train.evaluate import meaning_grid, moves, prompt_for, psnr
from sana_video.weights import bundled_model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def _sample(output) -> torch.Tensor:
    # The pipelines call the transformer with return_dict=False (a tuple); the sample comes first.
    return (output[0] if isinstance(output, tuple) else output.sample).float()


class Recorder:
    """Keeps every call's inputs to the transformer it is attached to (a forward pre-hook)."""

    def __init__(self, module: torch.nn.Module):
        self.calls: list[tuple[tuple, dict]] = []
        self._handle = module.register_forward_pre_hook(self._keep, with_kwargs=True)

    def _keep(self, module, args, kwargs):
        self.calls.append((args, dict(kwargs)))

    def close(self) -> None:
        self._handle.remove()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=bundled_model(), help="a small model's folder (default: the bundled one)"
    )
    parser.add_argument("--directions", type=int, default=1, help="directions per colour-shape pair (8: all)")
    parser.add_argument("--seeds", default="2", help="comma-separated")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    defaults = json.loads((Path(args.model) / "sana_video.json").read_text())
    settings = dict(
        height=defaults["height"],
        width=defaults["width"],
        frames=defaults["frames"],
        negative_prompt=defaults["negative_prompt"],
        num_inference_steps=defaults["steps"],
        guidance_scale=defaults["guidance"],
        complex_human_instruction=COMPLEX_HUMAN_INSTRUCTION
        if defaults["complex_human_instruction"]
        else None,
        output_type="np",
        use_resolution_binning=False,
    )
    pipe = SanaVideoPipeline.from_pretrained(args.model).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    if args.device == "cpu" and _cpu_has_native_bf16():  # the VAE as `sana-video` runs it here (faster)
        pipe.vae.to(torch.bfloat16)
    models = {"fp32": pipe.transformer, "bf16": copy.deepcopy(pipe.transformer).to(torch.bfloat16)}
    pipe.transformer = copy.deepcopy(models["bf16"])
    pipe.optimize(compile=False, vae_dtype=None, channels_last=False, fp8=True)  # quantizes pipe.transformer
    models["fp8"] = pipe.transformer

    rows = []
    for colour, shape, direction in meaning_grid(args.directions):
        for seed in (int(s) for s in args.seeds.split(",")):
            prompt = motion_prompt(prompt_for(colour, shape, direction, "slowly"), defaults["motion_score"])
            videos = {}
            for name, model in models.items():
                pipe.transformer = model
                recorder = Recorder(model) if name == "bf16" else None
                with torch.no_grad():
                    videos[name] = pipe(
                        prompt=prompt, generator=torch.Generator().manual_seed(seed), **settings
                    ).frames[0]
                if recorder is not None:
                    recorder.close()
                    calls = recorder.calls
            with torch.no_grad():  # every step's input of the bf16 run, through all three models
                outputs = {name: [_sample(m(*a, **k)) for a, k in calls] for name, m in models.items()}
            rows.append(
                {
                    "case": f"{colour} {shape} {direction}, seed {seed}",
                    "fp8_vs_bf16_output": statistics.mean(map(rel_err, outputs["fp8"], outputs["bf16"])),
                    "bf16_vs_fp32_output": statistics.mean(map(rel_err, outputs["bf16"], outputs["fp32"])),
                    "fp8_vs_bf16_psnr": psnr(videos["fp8"], videos["bf16"]),
                    "bf16_vs_fp32_psnr": psnr(videos["bf16"], videos["fp32"]),
                    **{f"moves_{name}": moves(v, colour, direction) for name, v in videos.items()},
                }
            )
            row = rows[-1]
            print(
                f"{row['case']:40s} output err fp8/bf16 {row['fp8_vs_bf16_output']:.2e} (bf16/fp32 "
                f"{row['bf16_vs_fp32_output']:.2e}); PSNR fp8/bf16 {row['fp8_vs_bf16_psnr']:.1f} dB (bf16/fp32 "
                f"{row['bf16_vs_fp32_psnr']:.1f}); moves fp32/bf16/fp8 "
                + "/".join("yes" if row[f"moves_{n}"] else "no" for n in models),
                flush=True,
            )

    def mean(key):
        return statistics.mean(r[key] for r in rows)

    def median(key):
        return float(np.median([r[key] for r in rows]))

    print(f"\n{len(rows)} videos, {args.model}, {args.device}, {settings['num_inference_steps']} steps, "
          f"guidance {settings['guidance_scale']}")  # fmt: skip
    print(f"transformer output rel. error: fp8 vs bf16 {mean('fp8_vs_bf16_output'):.2e}, "
          f"bf16 vs fp32 {mean('bf16_vs_fp32_output'):.2e} (mean over steps and videos)")  # fmt: skip
    print(f"video PSNR: fp8 vs bf16 median {median('fp8_vs_bf16_psnr'):.1f} dB (min "
          f"{min(r['fp8_vs_bf16_psnr'] for r in rows):.1f}), bf16 vs fp32 median {median('bf16_vs_fp32_psnr'):.1f} dB")  # fmt: skip
    print(
        "moves as prompted: "
        + ", ".join(f"{n} {sum(r[f'moves_{n}'] for r in rows)}/{len(rows)}" for n in models)
    )


if __name__ == "__main__":
    main()
