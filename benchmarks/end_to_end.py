"""A whole text-to-video generation, ours against diffusers, on the same components in the same run.

    python benchmarks/end_to_end.py                          # 480×832×81, 50 steps, CFG 6, CUDA
    python benchmarks/end_to_end.py --runs diffusers ours-optimized
    python benchmarks/end_to_end.py --smoke --device cpu     # tiny components, 2 steps: checks the script

Components have the real shapes and random weights: the 2B-480p transformer (bf16; diffusers' class and
ours hold the same weights), the Wan2.1 VAE (default config, fp32 as diffusers recommends), a Gemma-2 of
Gemma-2-2B's shape (bf16) and a word-level tokenizer (prompt words it does not know become <unk>; the
text encoder still reads the complex human instruction + prompt, ~300 tokens). Each run generates once
with 2 steps (warm-up: compilation, cuDNN plans) and is then timed on one full generation (text encoding,
--steps steps with CFG, VAE decode to frames). The frames are compared with diffusers eager's (random
weights: a check that the fast paths compute the same video, not a quality measure).

Runs: `diffusers` (eager), `diffusers-compiled` (its transformer under torch.compile), `ours` (eager, the
same dtypes), `ours-optimized` (`pipe.optimize()`: compiled blocks, VAE bf16 channels-last with a compiled
decoder), `ours-fp8` (the same plus FP8 matmuls); `ours-graphs`, `ours-fp8-graphs`: the same with the transformer
replayed from CUDA graphs (`optimize(cuda_graphs=True)`).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.pipelines.components

from tests.pipelines.components import make_tokenizer

RUNS = (
    "diffusers",
    "diffusers-compiled",
    "ours",
    "ours-optimized",
    "ours-fp8",
    "ours-graphs",
    "ours-fp8-graphs",
)
PROMPT = "a red fox running through fresh snow at dawn"


def build_components(device: torch.device, smoke: bool) -> dict:
    from diffusers import AutoencoderKLWan, DPMSolverMultistepScheduler
    from diffusers import SanaVideoTransformer3DModel as DiffusersTransformer
    from shapes import gemma_config
    from transformers import Gemma2Model

    from sana_video.model.presets import preset

    torch.manual_seed(0)
    if smoke:
        config = preset("tiny")
        vae_config = dict(base_dim=8, z_dim=config["in_channels"], dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    else:
        config, vae_config = preset("2b-480p"), {}
    with torch.device(device):
        text_encoder = Gemma2Model(gemma_config(smoke, config["caption_channels"])).to(torch.bfloat16).eval()
        vae = AutoencoderKLWan(**vae_config).eval()
        transformer = DiffusersTransformer(**config).to(torch.bfloat16).eval()
    scheduler = DPMSolverMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=8.0
    )
    return dict(tokenizer=make_tokenizer(), text_encoder=text_encoder, vae=vae, transformer=transformer,
                scheduler=scheduler)  # fmt: skip


def make_pipeline(run: str, parts: dict, vae_frames_per_call: int | None = None):
    from diffusers import SanaVideoPipeline as DiffusersPipeline

    from sana_video import SanaVideoPipeline, SanaVideoTransformer3DModel

    if run.startswith("diffusers"):
        pipe = DiffusersPipeline(**parts)
        if run == "diffusers-compiled":
            pipe.transformer = torch.compile(pipe.transformer)
        return pipe
    reference = parts["transformer"]
    with torch.device(reference.device):
        transformer = SanaVideoTransformer3DModel(**reference.config).to(torch.bfloat16).eval()
    transformer.load_state_dict(reference.state_dict())
    # optimize() casts the VAE in place: its own copy, so diffusers' runs keep the fp32 one
    vae = copy.deepcopy(parts["vae"]) if run != "ours" else parts["vae"]
    pipe = SanaVideoPipeline(**{**parts, "transformer": transformer, "vae": vae})
    if run != "ours":
        pipe.optimize(fp8="fp8" in run, vae_frames_per_call=vae_frames_per_call, cuda_graphs="graphs" in run)
    return pipe


def generate(pipe, args, steps: int) -> torch.Tensor:
    out = pipe(PROMPT, num_inference_steps=steps, height=args.size[0], width=args.size[1], frames=args.frames,
               guidance_scale=6.0, generator=torch.Generator(args.device).manual_seed(0), output_type="pt",
               use_resolution_binning=False)  # fmt: skip
    return out.frames.float()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", nargs="*", default=["diffusers", "ours-optimized", "ours-fp8"], choices=RUNS
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--size", type=int, nargs=2, default=(480, 832), metavar=("H", "W"))
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--smoke", action="store_true", help="tiny components, 2 steps, 32×32×9")
    parser.add_argument(
        "--vae-frames-per-call", type=int, help="for the optimized runs (optimize()'s default)"
    )
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.size, args.frames = 2, (32, 32), 9
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    parts = build_components(device, args.smoke)
    rows, reference = [], None
    for run in args.runs:
        pipe = make_pipeline(run, parts, args.vae_frames_per_call)
        pipe.set_progress_bar_config(disable=True)
        start = time.perf_counter()
        with torch.no_grad():
            generate(pipe, args, 2)  # warm-up (compiles)
        warm = time.perf_counter() - start
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        with torch.no_grad():
            frames = generate(pipe, args, args.steps)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        reference = frames if reference is None else reference
        err = ((frames - reference).norm() / reference.norm()).item()
        rows.append((run, seconds, peak, warm, err))
        print(" | ".join(map(str, rows[-1])), flush=True)  # as it comes: a cut-short run keeps its rows
        del pipe, frames
    name = torch.cuda.get_device_name(device) if cuda else device.type
    print(
        f"\n{name}, torch {torch.__version__}: {args.size[0]}×{args.size[1]}×{args.frames}, {args.steps} steps, CFG 6"
    )
    print(f"{'run':20s} {'seconds':>8s} {'peak GiB':>9s} {'warm-up s':>10s}  frames vs {args.runs[0]}")
    for run, seconds, peak, warm, err in rows:
        print(f"{run:20s} {seconds:8.2f} {peak:9.1f} {warm:10.1f}  {err:.2e}")


if __name__ == "__main__":
    main()
