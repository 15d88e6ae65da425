"""Production linear attention in plain PyTorch: the associative form, O(N·d²) per head.

Inputs may be bf16; ReLU happens in the input dtype (it is exact), everything after it in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each channel pair (x[2i], x[2i+1]) of x [B, N, H, d] by the per-token angle tables [N, d/2]."""
    even, odd = x.unflatten(-1, (-1, 2)).unbind(-1)  # [B, N, H, d/2] each
    cos, sin = cos[:, None], sin[:, None]  # [N, 1, d/2]: the same angle for every head
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


def linear_attention(q, k, v, rope, initial_state, output_final_state, eps):
    phi_q = F.relu(q).float()  # [B, N, H, d]
    phi_k = F.relu(k).float()
    q_rot, k_rot = (
        (rotate_pairs(phi_q, *rope), rotate_pairs(phi_k, *rope)) if rope is not None else (phi_q, phi_k)
    )

    kv = torch.einsum("bnhi,bnhj->bhij", v.float(), k_rot)  # Σ v k̃ᵀ      [B, H, d_v, d]
    k_sum = phi_k.sum(dim=1)  # Σ φ(k)     [B, H, d]
    if initial_state is not None:
        kv = kv + initial_state.kv
        k_sum = k_sum + initial_state.k_sum

    numerator = torch.einsum("bhij,bnhj->bnhi", kv, q_rot)  # [B, N, H, d_v]
    denominator = torch.einsum("bnhj,bhj->bnh", phi_q, k_sum) + eps  # [B, N, H]; RoPE-free, so > 0
    out = (numerator / denominator.unsqueeze(-1)).to(v.dtype)
    return out, ((kv, k_sum) if output_final_state else None)
