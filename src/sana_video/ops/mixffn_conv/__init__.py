"""The middle of the Mix-FFN fused: SiLU, the per-frame 3×3 depthwise conv, and the GLU gate.

    silu_dwconv_glu(z, weight, bias, grid) -> out

    z       [B, N, 2h]      conv_inverted's output, before SiLU; tokens in (frame, row, column) order
    weight  [2h, 1, 3, 3]   MixFFN.conv_depth.weight (nn.Conv2d(2h, 2h, 3, padding=1, groups=2h))
    bias    [2h] or None    MixFFN.conv_depth.bias
    grid    (frames, rows, cols), with N = frames·rows·cols
    out     [B, N, h]       u·SiLU(g) for u, g = conv(SiLU(z)).chunk(2, -1), in z's dtype

The conv runs on each frame on its own, with zero padding 1: neighbours never cross a frame's edges.
The kernel's math is fp32 and its output is cast once. `eager.py` is the model's own PyTorch code,
rounding after each op in the input's dtype; `naive.py` is the fp32 reference. The Triton kernel is the default for half-precision CUDA tensors that need no gradient (inference); elsewhere it
runs only where forced with `ops.use_backend("silu_dwconv_glu", "triton")`, as the tests do on the CPU
through Triton's interpreter.
"""

from __future__ import annotations

import torch

from sana_video.ops import dispatch
from sana_video.ops.mixffn_conv import eager, naive

try:
    from sana_video.ops.mixffn_conv import triton_kernel
except ImportError:  # no triton here (or the interpreter mode changed after its import): naive serves
    triton_kernel = None


def triton_available(z: torch.Tensor) -> bool:
    """Triton is importable, z is a CUDA tensor and needs no gradient (the kernel is forward only)."""
    return triton_kernel is not None and z.is_cuda and not z.requires_grad


def silu_dwconv_glu(
    z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, grid: tuple[int, int, int]
) -> torch.Tensor:
    """z [B, N, 2h], weight [2h, 1, 3, 3], bias [2h] or None, grid (frames, rows, cols) -> [B, N, h]."""
    _check(z, weight, bias, grid)
    return dispatch.resolve("silu_dwconv_glu", z)(z, weight, bias, tuple(int(s) for s in grid))


def _check(z, weight, bias, grid) -> None:
    if z.ndim != 3 or z.shape[-1] % 2:
        raise ValueError(f"z must be [B, N, 2h] with an even channel count; got {tuple(z.shape)}")
    channels = z.shape[-1]
    if len(grid) != 3 or any(int(s) < 0 for s in grid):
        raise ValueError(f"grid must be (frames, rows, cols) of non-negative sizes; got {tuple(grid)}")
    frames, rows, cols = (int(s) for s in grid)
    if frames * rows * cols != z.shape[1]:
        raise ValueError(
            f"grid {(frames, rows, cols)} holds {frames * rows * cols} tokens but z has N = {z.shape[1]}"
        )
    if tuple(weight.shape) != (channels, 1, 3, 3):
        raise ValueError(
            f"weight must be the depthwise conv's [2h, 1, 3, 3] = {(channels, 1, 3, 3)}; got {tuple(weight.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (channels,):
        raise ValueError(f"bias must be [2h] = [{channels}] or None; got {tuple(bias.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.device != z.device:
            raise ValueError(f"{name} is on {t.device} but z is on {z.device}")


dispatch.register("silu_dwconv_glu", "eager", eager.silu_dwconv_glu, priority=0)
dispatch.register("silu_dwconv_glu", "naive", naive.silu_dwconv_glu, priority=-1)
if triton_kernel is not None:
    # The default for half-precision CUDA tensors that need no gradient: on an H200 it ran the 2B model's
    # 480p Mix-FFN middle in 1.8 ms a layer where cuDNN's conv and the compiled SiLU and gate around it
    # took ~3.6 ms (docs/PERFORMANCE.md). CPU tensors (interpreted: far slower), training (forward only)
    # and fp32 stay on eager.
    dispatch.register(
        "silu_dwconv_glu",
        "triton",
        triton_kernel.silu_dwconv_glu_op,
        priority=1,
        available=lambda z: triton_available(z) and z.dtype in (torch.float16, torch.bfloat16),
    )

__all__ = ["silu_dwconv_glu", "triton_available"]
