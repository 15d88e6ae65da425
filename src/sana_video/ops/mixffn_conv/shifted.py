"""`silu_dwconv_glu` as nine shifted multiply-adds on the token layout, written for `torch.compile`:
Inductor makes it two passes — SiLU into a zero-padded copy (in z's dtype), then the nine taps, the bias
and the gate in fp32, written once — where the cuDNN path makes three (SiLU, conv, gate), each a full
write and read of the 2h-channel activations.

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
    hidden = channels // 2
    # SiLU rounded to z's dtype, as `eager` (and the reference) do: the padded copy, which Inductor writes
    # once because nine taps read it, is then half the size of an fp32 one. The rest is fp32.
    x = F.silu(z).reshape(batch * frames, rows, cols, channels)
    x = F.pad(x, (0, 0, 1, 1, 1, 1))  # one zero row and column around each frame: SiLU(0) = 0 padding
    taps = weight.float().reshape(channels, 9)  # tap (kr, kc) of channel c at [c, 3·kr + kc]
    bias = bias.float() if bias is not None else torch.zeros(channels, device=z.device)

    def conv(half: slice) -> torch.Tensor:
        # Each half on its own, used once by the gate below: Inductor inlines both into the gate's pass
        # rather than writing the conv's fp32 output.
        y = bias[half]
        for kr in range(3):  # nn.Conv2d correlates: out[r, c] = Σ w[kr, kc] · in[r + kr − 1, c + kc − 1]
            for kc in range(3):
                y = y + x[:, kr : kr + rows, kc : kc + cols, half].float() * taps[half, 3 * kr + kc]
        return y

    u, gate = conv(slice(0, hidden)), conv(slice(hidden, channels))
    return (u * F.silu(gate)).reshape(batch, tokens, hidden).to(z.dtype)
