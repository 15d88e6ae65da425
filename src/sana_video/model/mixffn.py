"""Mix-FFN (the checkpoints' GLUMBTempConv): a gated conv FFN per frame, then a temporal conv."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sana_video.model.layers import PointwiseConv
from sana_video.ops.mixffn_conv import silu_dwconv_glu


class TemporalConv(nn.Module):
    """Kernel-3 conv over frames at each spatial position, stored as the checkpoint's [D, D, 3, 1] weight.

    Run as three shifted matmuls on [B, F, P, D]: out[f] = W₀·y[f−1] + W₁·y[f] + W₂·y[f+1]. Frame −1 is
    `left` (the previous chunk's last frame) or zero; frame F is always zero.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, dim, 3, 1))

    def forward(self, y: torch.Tensor, left: torch.Tensor | None) -> torch.Tensor:
        out = self.tap(y, 1)  # taps 0, 1, 2 weigh frames f−1, f, f+1
        if y.shape[1] > 1:
            out[:, 1:] += self.tap(y[:, :-1], 0)
            out[:, :-1] += self.tap(y[:, 1:], 2)
        if left is not None:
            out[:, 0] += self.tap(left.to(y.dtype), 0)
        return out

    def tap(self, y: torch.Tensor, index: int) -> torch.Tensor:
        """One tap's matmul: y [..., D_in] -> [..., D_out]."""
        return F.linear(y, self.weight[:, :, index, 0])


class MixFFN(nn.Module):
    """1×1 conv D→2h + SiLU, 3×3 depthwise conv, GLU u·SiLU(g), 1×1 conv h→D, then y + TemporalConv(y).

    Works on the token layout [B, N, D]; only the depthwise conv needs the spatial grid.
    """

    def __init__(self, dim: int, mlp_ratio: float):
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.conv_inverted = PointwiseConv(dim, 2 * hidden)
        self.conv_depth = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.conv_point = PointwiseConv(hidden, dim, bias=False)
        self.conv_temp = TemporalConv(dim)

    def forward(
        self, x: torch.Tensor, grid: tuple[int, int, int], left: torch.Tensor | None, return_last: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [B, N, D] -> (out [B, N, D], this chunk's last spatial frame [B, P, D] if return_last)."""
        batch, tokens, dim = x.shape
        frames, rows, cols = grid
        # 1. Per-frame gated conv: SiLU, 3×3 depthwise conv, u·SiLU(g) (one op: ops.mixffn_conv)
        gated = silu_dwconv_glu(self.conv_inverted(x), self.conv_depth.weight, self.conv_depth.bias, grid)
        y = self.conv_point(gated)  # [B, N, D]
        # 2. Temporal mixing
        y = y.view(batch, frames, rows * cols, dim)  # [B, F, P, D]
        out = y + self.conv_temp(y, left)
        last = y[:, -1].clone() if return_last else None  # a copy, so the state does not pin y
        return out.view(batch, tokens, dim), last
