"""Each fused op against its plain PyTorch path, at the 2B model's 480p shapes, on one GPU.

    python benchmarks/ops_step.py                    # CUDA, bf16, 480×832×81 (21×30×52 tokens), CFG batch 2
    python benchmarks/ops_step.py --grid 3 4 6       # smoke (still CUDA)

For every op and backend: the median time of --repeats calls after warm-up, the bytes it must move at
least (inputs + output) over that time as GB/s, and the relative error against the fp32 reference
(`naive`; `eager` for linear attention). One forward step of the 2B model calls each op 20 times (once per layer; the norms 2-3 times),
so the "per step" column is 20× the op's time. Backends: the default (what the model runs today), the
same compiled by torch.compile, and the Triton kernel.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import statistics
import time

import torch

from sana_video.ops import QKNorm, dispatch, use_backend
from sana_video.ops.linear_attention import linear_attention
from sana_video.ops.mixffn_conv import silu_dwconv_glu
from sana_video.ops.norms import glu_gate, layer_norm_modulate, rms_norm


def timed(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rel_err(a, b) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def attention(q, k, v, rope, qk_norm=None, fp32=False):
    """The linear attention's output; fp32=True on fp32 copies (eager's bf16 inputs take bf16 operands).
    With qk_norm, q and k are un-normed and the op applies the RMSNorm across heads (the model's way)."""
    if fp32:
        q, k, v = (t.float() for t in (q, k, v))
        qk_norm = qk_norm and QKNorm(qk_norm.q_weight.float(), qk_norm.k_weight.float(), qk_norm.eps)
    return linear_attention(q, k, v, rope, qk_norm=qk_norm)[0]


def cases(batch, grid, heads, head_dim, hidden, dtype):
    """(name, op, call, bytes moved at least) at these shapes; la+qk_norm is the linear attention with the
    q/k RMSNorm handed to it (eager: normed first; Triton: inside its loads)."""
    gen = torch.Generator("cuda").manual_seed(0)
    tokens, width = math.prod(grid), heads * head_dim

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, device="cuda") * scale).to(dtype)

    size = torch.finfo(dtype).bits // 8
    angles = torch.rand(tokens, head_dim // 2, generator=gen, device="cuda") * 2 * math.pi
    rope = (angles.cos(), angles.sin())
    q, k, v = (randn(batch, tokens, heads, head_dim) for _ in range(3))
    x, shift, scale = (
        randn(batch, tokens, width),
        randn(batch, 1, width, scale=0.1),
        randn(batch, 1, width, scale=0.1),
    )
    z = randn(batch, tokens, 2 * hidden)
    conv_w, conv_b = randn(2 * hidden, 1, 3, 3, scale=0.3), randn(2 * hidden, scale=0.1)
    norm_w = 1 + randn(width, scale=0.1)
    qk_norm = QKNorm(norm_w, 1 + randn(width, scale=0.1), 1e-5)
    return [
        (
            "linear_attention",
            "linear_attention",
            functools.partial(attention, q, k, v, rope),
            4 * q.numel() * size,
        ),
        (
            "la+qk_norm",
            "linear_attention",
            functools.partial(attention, q, k, v, rope, qk_norm),
            4 * q.numel() * size,
        ),
        (
            "layer_norm_modulate",
            "layer_norm_modulate",
            lambda: layer_norm_modulate(x, shift, scale),
            2 * x.numel() * size,
        ),
        ("rms_norm", "rms_norm", lambda: rms_norm(x, norm_w), 2 * x.numel() * size),
        ("glu_gate", "glu_gate", lambda: glu_gate(z), 1.5 * z.numel() * size),
        (
            "silu_dwconv_glu",
            "silu_dwconv_glu",
            lambda: silu_dwconv_glu(z, conv_w, conv_b, grid),
            1.5 * z.numel() * size,
        ),
    ]


def time_variant(op, label, call, moved, reference, args) -> list[tuple]:
    """One table row for a kernel variant, or none (and a printed reason) if it fails: a tiling that does
    not compile is a result too."""
    try:
        with torch.no_grad():
            out = call()
            seconds = timed(call, args.warmup, args.repeats)
    except Exception as error:
        print(f"{op} {label}: {type(error).__name__}: {str(error)[:120]}")
        return []
    return [(op, label, seconds * 1e3, moved / seconds / 1e9, rel_err(out, reference))]


def sweep_linear_attention(args) -> list[tuple]:
    """The Triton linear attention with one phase's tiling changed at a time (tokens per tile / warps /
    pipeline stages, programs per SM), the other at its default."""
    from sana_video.ops.linear_attention import triton_kernel

    gen = torch.Generator("cuda").manual_seed(0)
    shape = (args.batch, math.prod(args.grid), args.heads, args.head_dim)
    q, k, v = (torch.randn(*shape, generator=gen, device="cuda").to(torch.bfloat16) for _ in range(3))
    angles = torch.rand(shape[1], args.head_dim // 2, generator=gen, device="cuda") * 2 * math.pi
    rope = (angles.cos(), angles.sin())
    moved = 4 * q.numel() * q.element_size()
    with torch.no_grad(), use_backend("linear_attention", "eager"):
        reference = attention(q, k, v, rope, fp32=True)
    tokens = shape[1]
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    default = triton_kernel.TILING[torch.bfloat16]
    tilings = [triton_kernel.Tiling(*t) for t in itertools.product((64, 128), (4, 8), (1, 2))]
    configs = [(f"state {t.block_n}/{t.num_warps}/{t.num_stages}", {"tiling": t, "output_tiling": default})
               for t in tilings]  # fmt: skip
    configs += [(f"output {t.block_n}/{t.num_warps}/{t.num_stages}", {"output_tiling": t}) for t in tilings]
    bh = shape[0] * shape[2]
    for per_sm in (1, 2, 4):  # phase-1 programs per SM, in whole tiles
        splits = max(1, per_sm * sms // bh)
        split = math.ceil(math.ceil(tokens / default.block_n) / splits) * default.block_n
        configs.append((f"splits {splits}", {"split_tokens": split}))
    for per_sm in (2, 8):  # phase-2 programs per SM (default 4)
        configs.append((f"outputs {per_sm}/SM", {"output_programs": max(1, per_sm * sms // bh)}))
    rows = []
    for label, kwargs in configs:

        def call(kwargs=kwargs):
            return triton_kernel.linear_attention(q, k, v, rope, None, False, 1e-15, **kwargs)[0]

        rows += time_variant("linear_attention", label, call, moved, reference, args)
    return rows


def sweep_dwconv(args) -> list[tuple]:
    """The Triton SiLU + depthwise conv + GLU under each tiling (columns, channels, warps per program)."""
    from sana_video.ops.mixffn_conv import triton_kernel

    gen = torch.Generator("cuda").manual_seed(0)
    z = torch.randn(args.batch, math.prod(args.grid), 2 * args.hidden, generator=gen, device="cuda")
    weight = (torch.randn(2 * args.hidden, 1, 3, 3, generator=gen, device="cuda") * 0.3).bfloat16()
    bias = (torch.randn(2 * args.hidden, generator=gen, device="cuda") * 0.1).bfloat16()
    zb = z.bfloat16()
    moved = 1.5 * zb.numel() * zb.element_size()
    with torch.no_grad(), use_backend("silu_dwconv_glu", "naive"):
        reference = silu_dwconv_glu(zb, weight, bias, args.grid)
    rows = []
    # (columns, channels, warps): 2 to 8 values a thread. Each thread keeps the 18 taps of each channel
    # it holds, so fewer channels a thread means fewer registers.
    tilings = [(16, 16, 4), (32, 16, 4), (32, 16, 8), (64, 16, 8), (16, 32, 4), (16, 32, 8), (32, 32, 8),
               (64, 8, 4), (32, 64, 8)]  # fmt: skip
    for block_c, block_h, warps in tilings:

        def call(block_c=block_c, block_h=block_h, warps=warps):
            return triton_kernel.silu_dwconv_glu(zb, weight, bias, tuple(args.grid), block_c=block_c,
                                                 block_h=block_h, num_warps=warps)  # fmt: skip

        label = f"triton c{block_c} h{block_h} w{warps}"
        rows += time_variant("silu_dwconv_glu", label, call, moved, reference, args)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", type=int, nargs=3, default=(21, 30, 52), metavar=("F", "H", "W"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--heads", type=int, default=20)
    parser.add_argument("--head-dim", type=int, default=112)
    parser.add_argument("--hidden", type=int, default=5600, help="Mix-FFN hidden width (2240 × 2.5)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--ops", nargs="*", help="only these ops (default: all)")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="also time the linear attention's and the depthwise conv's Triton tilings",
    )
    parser.add_argument("--dwconv-tiling", type=int, nargs=3, metavar=("COLUMNS", "CHANNELS", "WARPS"),
                        help="the depthwise conv kernel's default tiling for this run")  # fmt: skip
    args = parser.parse_args()
    if args.dwconv_tiling:
        from sana_video.ops.mixffn_conv import triton_kernel

        triton_kernel.MAX_BLOCK_C, triton_kernel.MAX_BLOCK_H, triton_kernel.NUM_WARPS = args.dwconv_tiling
    torch.backends.cuda.matmul.allow_tf32 = True
    print(torch.cuda.get_device_name(), "| torch", torch.__version__)
    rows = []
    with torch.no_grad():
        for name, op, call, moved in cases(args.batch, tuple(args.grid), args.heads, args.head_dim,
                                           args.hidden, torch.bfloat16):  # fmt: skip
            if args.ops and name not in args.ops:
                continue
            # The fp32 reference: `naive`; for linear attention the associative path (`eager`, tested
            # against the quadratic `naive`, which would need [B, H, N, N] here) on fp32 copies.
            with use_backend(op, "eager" if op == "linear_attention" else "naive"):
                reference = call(fp32=True) if op == "linear_attention" else call()
            default = next(name for name in dispatch.backends(op) if name in ("eager", "naive"))
            runs = [(default, default, False), ("triton", "triton", False)]
            if not args.no_compile:
                runs.insert(1, (f"{default}+compile", default, True))
            for label, backend, compiled in runs:
                try:
                    with use_backend(op, backend):
                        fn = torch.compile(call, dynamic=False) if compiled else call
                        out = fn()
                        seconds = timed(fn, args.warmup, args.repeats)
                    rows.append((name, label, seconds * 1e3, moved / seconds / 1e9, rel_err(out, reference)))
                except Exception as error:  # a failing backend is a result to report
                    rows.append((name, label, float("nan"), float("nan"), float("nan")))
                    print(f"{name} {label}: {type(error).__name__}: {str(error)[:300]}")
                torch._dynamo.reset()
    if args.sweep and (not args.ops or "linear_attention" in args.ops):
        rows += sweep_linear_attention(args)
    if args.sweep and (not args.ops or "silu_dwconv_glu" in args.ops):
        rows += sweep_dwconv(args)
    print(
        f"\nbatch {args.batch}, grid {tuple(args.grid)}, heads {args.heads}×{args.head_dim}, hidden {args.hidden}, bf16"
    )
    print(f"{'op':<20} {'backend':<20} {'ms':>8} {'per step':>9} {'GB/s':>7} {'rel err':>9}")
    for op, label, ms, rate, err in rows:
        print(f"{op:<20} {label:<20} {ms:8.3f} {20 * ms:8.1f}ms {rate:7.0f} {err:9.2e}")


if __name__ == "__main__":
    main()
