"""ReLU linear attention with RoPE in the numerator, and a running state for block-causal use.

For one head, with φ = ReLU and q̃ = RoPE(φ(q)), k̃ = RoPE(φ(k)):

    S = S₀ + Σ_j v_j k̃_jᵀ        [d_v, d]   fp32
    z = z₀ + Σ_j φ(k_j)           [d]        fp32
    o_i = S q̃_i / (z · φ(q_i) + eps)

The derivation and the precision choices are in this folder's README.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from sana_video.ops import dispatch
from sana_video.ops.linear_attention import eager, naive
from sana_video.ops.norms import rms_norm


class QKNorm(NamedTuple):
    """RMSNorm across heads for q and k (as `model.layers.RMSNorm` over H·d channels), handed to the op
    so a backend can apply it while it loads q and k instead of in separate passes."""

    q_weight: torch.Tensor  # [H·d]
    k_weight: torch.Tensor  # [H·d]
    eps: float


class LinearAttentionState(NamedTuple):
    """Running sums over every key seen so far: the context of earlier chunks."""

    kv: torch.Tensor  # S = Σ v k̃ᵀ   [B, H, d_v, d]  fp32
    k_sum: torch.Tensor  # z = Σ φ(k)    [B, H, d]       fp32


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    initial_state: LinearAttentionState | None = None,
    output_final_state: bool = False,
    eps: float = 1e-15,
    qk_norm: QKNorm | None = None,
) -> tuple[torch.Tensor, LinearAttentionState | None]:
    """Bidirectional ReLU linear attention over one chunk, reading (and optionally extending) a state.

    Args:
        q, k: [B, N, H, d] projected (and normed) queries and keys, before ReLU.
        v: [B, N, H, d_v] values.
        rope: (cos, sin), each [N, d // 2] fp32: the rotation angle of each interleaved channel pair
            (x[2i], x[2i+1]) for each token. None skips RoPE.
        initial_state: the sums of earlier chunks; None means an empty context.
        output_final_state: also return initial_state plus this chunk's keys and values.
        eps: added to the normalizer (1e-15, as the reference).
        qk_norm: if given, q and k are un-normed and are RMS-normalised across heads first (`QKNorm`);
            the Triton backend does it inside its loads, the others with `ops.norms.rms_norm`.

    Returns:
        o [B, N, H, d_v] in v's dtype, and the final state (or None).
    """
    _check(q, k, v, rope, initial_state)
    impl = dispatch.resolve("linear_attention", q)
    folded = {}
    if qk_norm is not None:
        _check_norm(q, qk_norm)
        trains_norm = torch.is_grad_enabled() and (
            qk_norm.q_weight.requires_grad or qk_norm.k_weight.requires_grad
        )
        if getattr(impl, "folds_qk_norm", False) and not trains_norm:
            folded = {"qk_norm": tuple(qk_norm)}
        else:  # normed here; the normed q decides the backend (it needs a gradient if the weights do)
            q = rms_norm(q.flatten(2), qk_norm.q_weight, qk_norm.eps).unflatten(-1, q.shape[-2:])
            k = rms_norm(k.flatten(2), qk_norm.k_weight, qk_norm.eps).unflatten(-1, k.shape[-2:])
            impl = dispatch.resolve("linear_attention", q)
    out, final = impl(q, k, v, rope, initial_state, output_final_state, eps, **folded)
    return out, (LinearAttentionState(*final) if final is not None else None)


def _check_norm(q, qk_norm: QKNorm) -> None:
    width = q.shape[-2] * q.shape[-1]
    if qk_norm.q_weight.shape != (width,) or qk_norm.k_weight.shape != (width,):
        raise ValueError(
            f"qk_norm weights must be [H·d] = [{width}]; got "
            f"{tuple(qk_norm.q_weight.shape)} and {tuple(qk_norm.k_weight.shape)}"
        )


def _check(q, k, v, rope, state) -> None:
    if q.ndim != 4 or q.shape != k.shape:
        raise ValueError(f"q and k must both be [B, N, H, d]; got {tuple(q.shape)} and {tuple(k.shape)}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be [B, N, H, d_v] matching q's {tuple(q.shape[:3])}; got {tuple(v.shape)}")
    batch, tokens, heads, dim = q.shape
    if rope is not None:
        if dim % 2:
            raise ValueError(f"RoPE rotates channel pairs, so the head dim must be even (got {dim})")
        for table in rope:
            if table.shape != (tokens, dim // 2):
                raise ValueError(
                    f"rope tables must be [N, d/2] = {(tokens, dim // 2)}; got {tuple(table.shape)}"
                )
    if state is not None:
        want_kv, want_k = (batch, heads, v.shape[-1], dim), (batch, heads, dim)
        if tuple(state.kv.shape) != want_kv or tuple(state.k_sum.shape) != want_k:
            raise ValueError(
                f"state shapes kv {tuple(state.kv.shape)}, k_sum {tuple(state.k_sum.shape)} do not match "
                f"this input: need kv {want_kv} and k_sum {want_k}"
            )


dispatch.register("linear_attention", "eager", eager.linear_attention, priority=0)
dispatch.register("linear_attention", "naive", naive.linear_attention, priority=-1)

try:
    from sana_video.ops.linear_attention import triton_kernel
except ImportError:  # no triton here (or the interpreter mode changed after its import): eager serves
    triton_kernel = None
else:
    # The default for half-precision CUDA tensors that need no gradient: on an H200 it ran the 2B model's
    # 480p attention in 1.5 ms a layer where eager took 10.7 ms (2.6 ms compiled; docs/PERFORMANCE.md).
    # Interpreted on CPU tensors it is far slower than eager; where q needs a gradient (training) eager
    # runs, so autograd is never silently cut; fp32 stays on eager, the exact path.
    dispatch.register(
        "linear_attention",
        "triton",
        triton_kernel.linear_attention_op,
        priority=1,
        available=lambda x: x.is_cuda and not x.requires_grad and x.dtype in (torch.float16, torch.bfloat16),
    )

__all__ = ["LinearAttentionState", "QKNorm", "linear_attention"]
