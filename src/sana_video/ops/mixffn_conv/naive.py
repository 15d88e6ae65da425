"""fp32 reference for `silu_dwconv_glu`: upcast, SiLU, per-frame NCHW depthwise conv, gate, cast back.

Written independently of the model code (which the tests also compare against) and of the kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def silu_dwconv_glu(
    z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, grid: tuple[int, int, int]
) -> torch.Tensor:
    batch, tokens, channels = z.shape
    frames, rows, cols = grid
    y = F.silu(z.float())
    # Tokens are (frame, row, column)-ordered, so each frame is an image [rows, cols, 2h].
    y = y.reshape(batch * frames, rows, cols, channels).permute(0, 3, 1, 2)
    y = F.conv2d(
        y, weight.float(), None if bias is None else bias.float(), padding=1, groups=channels
    )  # zero padding per frame: no neighbour crosses a frame's edge
    y = y.permute(0, 2, 3, 1).reshape(batch, tokens, channels)
    u, gate = y.chunk(2, dim=-1)
    return (u * F.silu(gate)).to(z.dtype)
