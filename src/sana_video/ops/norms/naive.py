"""fp32 references for the norms and the Mix-FFN gate: upcast, compute, cast back.

Written independently of the model code (which the tests also compare against) and of the kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def layer_norm_modulate(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    xf = x.float()
    mean = xf.mean(-1, keepdim=True)
    var = (xf - mean).pow(2).mean(-1, keepdim=True)  # biased, as LayerNorm
    y = (xf - mean) * torch.rsqrt(var + eps)
    return (y * (1 + scale.float()) + shift.float()).to(x.dtype)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    xf = x.float()
    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    if weight.dtype in (torch.float16, torch.bfloat16):
        # Not plain fp32: the model's RMSNorm rounds to the weight's dtype before the scale.
        return (normed.to(weight.dtype) * weight).to(x.dtype)
    return (normed * weight.float()).to(x.dtype)


def glu_gate(y: torch.Tensor, silu_input: bool = False) -> torch.Tensor:
    yf = y.float()
    if silu_input:
        yf = F.silu(yf)
    u, gate = yf.chunk(2, dim=-1)
    return (u * F.silu(gate)).to(y.dtype)
