"""`silu_dwconv_glu` as nine shifted multiply-adds on the token layout, fp32 inside, written for
`torch.compile`: Inductor fuses SiLU, the zero padding, the nine taps, the bias and the gate into one
pass that reads z and writes the output once — no NCHW conv, no SiLU'd or conv'd copy in memory.

Uncompiled it makes a full-size temporary per tap (slower than `eager`), so it is chosen only while
compiling on CUDA (`__init__.py`). The output is cast once, to z's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def silu_dwconv_glu(
    z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, grid: tuple[int, int, int]
) -> torch.Tensor:
    batch, tokens, channels = z.shape
    frames, rows, cols = grid
    x = F.silu(z.float()).reshape(batch * frames, rows, cols, channels)
    x = F.pad(x, (0, 0, 1, 1, 1, 1))  # one zero row and column around each frame: SiLU(0) = 0 padding
    taps = weight.float().reshape(channels, 9)  # tap (kr, kc) of channel c at [c, 3·kr + kc]
    y = bias.float() if bias is not None else 0.0
    for kr in range(3):  # nn.Conv2d correlates: out[r, c] = Σ w[kr, kc] · in[r + kr − 1, c + kc − 1]
        for kc in range(3):
            y = y + x[:, kr : kr + rows, kc : kc + cols] * taps[:, 3 * kr + kc]
    u, gate = y.reshape(batch, tokens, channels).chunk(2, dim=-1)
    return (u * F.silu(gate)).to(z.dtype)
