"""Production `layer_norm_modulate` in plain PyTorch, in the input's dtype: what the block always ran.

LayerNorm (fp32 statistics inside `F.layer_norm`, output in x's dtype), then the modulation in that
dtype, exactly as the reference checkpoints' code does: in fp32 it equals `naive`, in bf16 it matches
diffusers op for op. (`rms_norm`'s reference already is the model's math, so it has no eager twin.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def layer_norm_modulate(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], eps=eps) * (1 + scale) + shift
