"""Where a transformer step's GPU time goes: the top kernels of one step of ours, by total CUDA time.

    python benchmarks/profile_step.py                       # 2B-480p, CFG batch 2, bf16, compiled blocks
    python benchmarks/profile_step.py --eager --force fused  # eager, every Triton kernel forced

Random weights; the same inputs as benchmarks/transformer_step.py.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile
from transformer_step import fused_kernels, parse_mode

from sana_video import SanaVideoTransformer3DModel
from sana_video.model.fp8 import quantize_fp8
from sana_video.model.presets import preset


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="2b-480p")
    parser.add_argument("--latent", type=int, nargs=3, default=(21, 60, 104), metavar=("F", "H", "W"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--text-len", type=int, default=300)
    parser.add_argument("--eager", action="store_true", help="do not compile the blocks")
    parser.add_argument("--force", type=parse_mode, default="", help="backends to force, as transformer_step's modes: "
                        "fused, la, dwconv, norms, plain, joined by '+'")  # fmt: skip
    parser.add_argument("--fp8", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()

    cfg, device, dtype = preset(args.preset), torch.device("cuda"), torch.bfloat16
    torch.manual_seed(0)
    with torch.device(device):
        model = SanaVideoTransformer3DModel(**cfg).eval().to(dtype)
    if args.fp8:
        quantize_fp8(model)
    if not args.eager:
        model.compile_repeated_blocks(fullgraph=True, dynamic=False)
    gen = torch.Generator(device).manual_seed(0)
    x = torch.randn(args.batch, cfg["in_channels"], *args.latent, generator=gen, device=device, dtype=dtype)
    text = torch.randn(
        args.batch, args.text_len, cfg["caption_channels"], generator=gen, device=device, dtype=dtype
    )
    mask = torch.ones(args.batch, args.text_len, dtype=torch.long, device=device)
    mask[:, args.text_len // 3 :] = 0
    t = torch.full((args.batch,), 999, device=device)
    with (
        torch.no_grad(),
        fused_kernels(args.force),
    ):
        for _ in range(3):
            model(x, text, t, encoder_attention_mask=mask)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            model(x, text, t, encoder_attention_mask=mask)
            torch.cuda.synchronize()
    events = prof.key_averages()
    total = sum(e.self_device_time_total for e in events)
    print(f"\nGPU time of one step: {total / 1e3:.1f} ms ({torch.cuda.get_device_name()})")
    print(f"{'ms':>8s} {'share':>6s} {'calls':>6s}  kernel")
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[: args.top]:
        print(
            f"{e.self_device_time_total / 1e3:8.2f} {e.self_device_time_total / total:6.1%} {e.count:6d}  {e.key[:110]}"
        )


if __name__ == "__main__":
    main()
