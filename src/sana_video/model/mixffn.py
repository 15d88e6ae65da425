"""Mix-FFN (the checkpoints' GLUMBTempConv): a gated conv FFN per frame, then a temporal conv."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sana_video.model.layers import PointwiseConv
from sana_video.ops.mixffn_conv import silu_dwconv_glu


class TemporalConv(nn.Module):
    """Kernel-3 conv over frames at each spatial position, stored as the checkpoint's [D, D, 3, 1] weight.

    Run as one matmul on [B, F, P, D] giving all three taps of every frame, then shifted sums:
    out[f] = W₀·y[f−1] + W₁·y[f] + W₂·y[f+1]. Frame −1 is `left` (the previous chunk's last frame) or
    zero; frame F is always zero. (One matmul of width 3D reads y once; eager, the sums are added in
    place; compiled, they fuse into one pass.)
    """

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, dim, 3, 1))

    def forward(self, y: torch.Tensor, left: torch.Tensor | None) -> torch.Tensor:
        taps = self.taps(y)  # [B, F, P, 3, D]: what frame f sends to f+1 (tap 0), f (1) and f−1 (2)
        before, same, after = (taps.select(-2, i) for i in range(3))  # views (in place is allowed on them)
        first = self.taps(left.to(y.dtype)).select(-2, 0) if left is not None else None
        if torch.compiler.is_compiling():
            # Zero-padded shifts, each read once: Inductor fuses the sums into one pass.
            out = same + F.pad(before[:, :-1], (0, 0, 0, 0, 1, 0)) + F.pad(after[:, 1:], (0, 0, 0, 0, 0, 1))
            return out if first is None else out + F.pad(first[:, None], (0, 0, 0, 0, 0, y.shape[1] - 1))
        # Eager: in place, so no full-size temporaries beside the taps.
        same[:, 1:] += before[:, :-1]
        same[:, :-1] += after[:, 1:]
        if first is not None:
            same[:, 0] += first
        return same

    def taps(self, y: torch.Tensor) -> torch.Tensor:
        """Every tap's matmul at once: y [..., D_in] -> [..., 3, D_out] (tap 0 weighs the frame before)."""
        weight = self.weight[..., 0].permute(2, 0, 1).flatten(0, 1)  # [3·D_out, D_in], tap-major rows
        return F.linear(y, weight).unflatten(-1, (3, -1))


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
