"""Linear layers in float8 (e4m3) with dynamic per-row scales, for inference.

    weight_fp8, weight_scale = quantize_rows(weight)          # once: [N, K] -> fp8 [N, K], fp32 [N, 1]
    y = fp8_linear(x, weight_fp8, weight_scale, bias)          # x [..., K] -> y [..., N] in x's dtype

Each activation row (token) is scaled by its own amax when the call happens; each weight row (output
channel) by its own, once. Both scales are fp32 and the product accumulates in fp32; e4m3 keeps 3
mantissa bits, so a single rounding is off by at most 2⁻⁴ relatively. The derivation of the error and
the layouts are in this folder's README.
"""

from __future__ import annotations

import torch

from sana_video.ops import dispatch
from sana_video.ops.fp8_linear import naive, scaled_mm

try:
    from sana_video.ops.fp8_linear import triton_quantize
except ImportError:  # no triton here (or the interpreter mode changed after its import): torch serves
    triton_quantize = None

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448
_TINY = 1e-12  # an all-zero row keeps a finite scale (and quantizes to zeros)


def quantize_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """t [M, K] -> (fp8 [M, K], fp32 scale [M, 1]) with t ≈ fp8 · scale; each row's amax maps to 448."""
    if t.ndim != 2:
        raise ValueError(f"quantize_rows takes a matrix [rows, columns]; got shape {tuple(t.shape)}")
    return dispatch.resolve("quantize_rows", t)(t)


def _quantize_rows_torch(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    t = t.float()
    # times fp32(1/448), not divided by 448: what CUDA's division by a scalar computes, here on every device
    scale = t.abs().amax(dim=1, keepdim=True).clamp_min(_TINY) * (1 / FP8_MAX)
    return (t / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


def fp8_linear(
    x: torch.Tensor, weight_fp8: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """x [..., K] (any float dtype) -> [..., N] in x's dtype; weight_fp8 [N, K], weight_scale [N, 1]."""
    if weight_fp8.dtype != FP8 or weight_fp8.ndim != 2 or weight_scale.shape != (weight_fp8.shape[0], 1):
        raise ValueError(
            f"need weight_fp8 [N, K] in {FP8} and weight_scale [N, 1] (from quantize_rows); got "
            f"{tuple(weight_fp8.shape)} {weight_fp8.dtype} and {tuple(weight_scale.shape)}"
        )
    if x.shape[-1] != weight_fp8.shape[1]:
        raise ValueError(f"x has {x.shape[-1]} features but the weight takes {weight_fp8.shape[1]}")
    rows = x.reshape(-1, x.shape[-1])
    x_fp8, x_scale = quantize_rows(rows)
    out = dispatch.resolve("fp8_linear", rows)(x_fp8, x_scale, weight_fp8, weight_scale, bias, x.dtype)
    return out.reshape(*x.shape[:-1], weight_fp8.shape[0])


def scaled_mm_available(x: torch.Tensor) -> bool:
    """float8 tensor cores (CUDA compute capability 8.9, Ada, or 9.0+, Hopper) and a bf16 output, the
    one row-wise scaling supports there."""
    return x.is_cuda and x.dtype == torch.bfloat16 and torch.cuda.get_device_capability(x.device) >= (8, 9)


def _triton_quantize_available(t: torch.Tensor) -> bool:
    return (
        triton_quantize is not None
        and t.is_cuda
        and not t.requires_grad
        and t.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and t.shape[-1] <= triton_quantize.MAX_COLUMNS
    )


dispatch.register("quantize_rows", "torch", _quantize_rows_torch, priority=0)
if triton_quantize is not None:
    # The default on CUDA: one pass per row, where the compiled torch version read each row twice
    # (docs/PERFORMANCE.md). Forced on the CPU by the tests, through Triton's interpreter.
    dispatch.register(
        "quantize_rows",
        "triton",
        triton_quantize.quantize_rows,
        priority=1,
        available=_triton_quantize_available,
    )
dispatch.register("fp8_linear", "naive", naive.fp8_linear, priority=0)
dispatch.register("fp8_linear", "scaled_mm", scaled_mm.fp8_linear, priority=1, available=scaled_mm_available)

__all__ = ["FP8", "fp8_linear", "quantize_rows"]
