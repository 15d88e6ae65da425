"""Production linear attention in plain PyTorch: the associative form, O(N·d²) per head.

Inputs may be bf16; ReLU happens in the input dtype (it is exact), everything after it in fp32. For bf16
inputs that need no gradient (inference), the two matmuls take bf16 operands and sum in fp32 — on CUDA
the tensor cores instead of fp32 FMAs (those took 11 % of a compiled 2B step on an H200,
docs/PERFORMANCE.md): q̃ and k̃ are rounded to bf16 after RoPE, as the reference does, and S enters the
second matmul as two bf16 parts whose sum keeps ~16 of its 24 mantissa bits.
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
    tensors = (q, k, v, *(initial_state or ()))
    if v.dtype == torch.bfloat16 and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
        return _bf16_operands(q, k, v, rope, initial_state, output_final_state, eps)
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


def _bmm_fp32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for [batch, n, m] @ [batch, m, p], summed and returned in fp32. bf16 operands on CUDA use the
    tensor cores (torch.bmm's out_dtype); elsewhere both are upcast first: the same products (a product of
    two bf16 values is exact in fp32), summed in another order."""
    if a.is_cuda and a.dtype == b.dtype == torch.bfloat16:
        return torch.bmm(a, b, out_dtype=torch.float32)
    return torch.bmm(a.float(), b.float())


def _bf16_operands(q, k, v, rope, initial_state, output_final_state, eps):
    batch, tokens, heads, dim = q.shape
    dim_v = v.shape[-1]
    phi_q, phi_k = F.relu(q), F.relu(k)  # exact in bf16
    q_rot, k_rot = phi_q, phi_k
    if rope is not None:
        q_rot, k_rot = (rotate_pairs(x.float(), *rope).to(torch.bfloat16) for x in (phi_q, phi_k))

    def per_head(x):  # [B, N, H, c] -> [B·H, N, c]
        return x.transpose(1, 2).reshape(batch * heads, tokens, x.shape[-1])

    kv = _bmm_fp32(per_head(v).transpose(1, 2), per_head(k_rot))  # Σ v k̃ᵀ  [B·H, d_v, d]
    kv = kv.view(batch, heads, dim_v, dim)
    k_sum = phi_k.float().sum(dim=1)
    if initial_state is not None:
        kv = kv + initial_state.kv
        k_sum = k_sum + initial_state.k_sum

    high = kv.to(torch.bfloat16)
    low = (kv - high.float()).to(torch.bfloat16)  # S ≈ high + low to ~2⁻¹⁷ relative
    # S q̃ = [S_hi S_lo] [q̃; q̃]: one matmul over 2d, so the fp32 numerator is written once, not twice
    # and added (compiled, the RoPE pass writes q̃ straight into both halves).
    s_pair = torch.cat((high, low), dim=-1).flatten(0, 1)  # [B·H, d_v, 2d]
    numerator = _bmm_fp32(per_head(torch.cat((q_rot, q_rot), dim=-1)), s_pair.transpose(1, 2))
    numerator = numerator.view(batch, heads, tokens, dim_v).transpose(1, 2)  # [B, N, H, d_v]
    # A product and a sum, not an einsum: compiled, it fuses with ReLU into one read of q (an einsum
    # became a separate GEMV over an fp32 copy of φ(q), H200 profile).
    denominator = (phi_q.float() * k_sum[:, None]).sum(dim=-1) + eps
    out = (numerator / denominator.unsqueeze(-1)).to(v.dtype)
    return out, ((kv, k_sum) if output_final_state else None)
