"""Production `silu_dwconv_glu` in plain PyTorch, in the input's dtype: what `MixFFN` always ran.

Each op rounds to the input dtype (SiLU, the conv, the gate), exactly as the reference checkpoints' code
does, so in fp32 it equals `naive` and in bf16 it matches diffusers op for op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def silu_dwconv_glu(
    z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, grid: tuple[int, int, int]
) -> torch.Tensor:
    batch, tokens, channels = z.shape
    frames, rows, cols = grid
    # An NCHW view of channels-last memory: no copy in, and the conv keeps the layout on the way out.
    y = F.silu(z).reshape(batch * frames, rows, cols, channels).permute(0, 3, 1, 2)
    y = F.conv2d(y, weight, bias, padding=1, groups=channels)
    u, gate = y.permute(0, 2, 3, 1).reshape(batch, tokens, channels).chunk(2, dim=-1)
    return u * F.silu(gate)
