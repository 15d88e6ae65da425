"""fp32 reference for linear attention: the quadratic form, written as plainly as possible.

    o_i = (S₀ q̃_i + Σ_j (q̃_i · k̃_j) v_j) / (z₀ · φ(q_i) + Σ_j φ(q_i) · φ(k_j) + eps)

RoPE is applied as a complex multiplication, independently of the production code's real form.
O(N²): for tests on small shapes only.
"""

from __future__ import annotations

import torch


def rope_complex(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, N, H, d] real -> each pair (x[2i], x[2i+1]) read as x[2i] + i·x[2i+1], times e^{iθ}."""
    pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
    rotation = torch.complex(cos, sin)[:, None, :]  # [N, 1, d/2]
    return torch.view_as_real(pairs * rotation).flatten(-2)


def linear_attention(q, k, v, rope=None, initial_state=None, output_final_state=False, eps=1e-15):
    out_dtype = v.dtype
    phi_q = torch.relu(q.float())
    phi_k = torch.relu(k.float())
    v = v.float()
    q_rot, k_rot = phi_q, phi_k
    if rope is not None:
        q_rot, k_rot = rope_complex(phi_q, *rope), rope_complex(phi_k, *rope)

    # Pairwise weights between query i and key j, per head.
    rotated = torch.einsum("bihd,bjhd->bhij", q_rot, k_rot)
    plain = torch.einsum("bihd,bjhd->bhij", phi_q, phi_k)
    numerator = torch.einsum("bhij,bjhe->bihe", rotated, v)
    denominator = plain.sum(dim=-1).transpose(1, 2)  # [B, N, H]

    if initial_state is not None:
        kv0, k_sum0 = initial_state
        numerator = numerator + torch.einsum("bhed,bihd->bihe", kv0, q_rot)
        denominator = denominator + torch.einsum("bihd,bhd->bih", phi_q, k_sum0)

    out = (numerator / (denominator + eps).unsqueeze(-1)).to(out_dtype)

    final = None
    if output_final_state:
        kv = torch.einsum("bjhe,bjhd->bhed", v, k_rot)
        k_sum = phi_k.sum(dim=1)
        if initial_state is not None:
            kv, k_sum = kv + initial_state[0], k_sum + initial_state[1]
        final = (kv, k_sum)
    return out, final
