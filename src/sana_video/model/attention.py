"""Self-attention (ReLU linear, with state) and cross-attention to the text (softmax)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sana_video.model.layers import RMSNorm
from sana_video.ops import LinearAttentionState, QKNorm, linear_attention

QK_NORMS = ("rms_norm_across_heads", None)


def _qk_norm(kind: str | None, dim: int) -> nn.Module:
    # RMSNorm across all heads at once (over heads·head_dim channels), eps 1e-5 as the checkpoints.
    return RMSNorm(dim, eps=1e-5) if kind == "rms_norm_across_heads" else nn.Identity()


class LinearSelfAttention(nn.Module):
    """Linear attention over the video tokens; its state is the context of earlier chunks."""

    def __init__(self, dim: int, heads: int, head_dim: int, bias: bool, qk_norm: str | None, dropout: float):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(dim, inner, bias=bias)
        self.to_v = nn.Linear(dim, inner, bias=bias)
        self.norm_q = _qk_norm(qk_norm, inner)
        self.norm_k = _qk_norm(qk_norm, inner)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))
        self.to_qkv: nn.Module | None = None  # fuse_projections() replaces to_q, to_k, to_v by it

    @torch.no_grad()
    def fuse_projections(self) -> None:
        """Inference only, in place: to_q, to_k and to_v become one layer `to_qkv` (their weights stacked),
        so x is read once — and quantized once where the layer runs in float8 (`model.fp8`)."""
        if self.to_qkv is not None:
            return
        parts = (self.to_q, self.to_k, self.to_v)
        fused = nn.Linear(parts[0].in_features, 3 * parts[0].out_features, bias=parts[0].bias is not None)
        fused.to(device=parts[0].weight.device, dtype=parts[0].weight.dtype)
        fused.weight.copy_(torch.cat([p.weight for p in parts]))
        if fused.bias is not None:
            fused.bias.copy_(torch.cat([p.bias for p in parts]))
        self.to_qkv = fused
        del self.to_q, self.to_k, self.to_v

    def forward(
        self,
        x: torch.Tensor,  # [B, N, D]
        rope: tuple[torch.Tensor, torch.Tensor],
        state: LinearAttentionState | None,
        return_state: bool,
    ) -> tuple[torch.Tensor, LinearAttentionState | None]:
        if self.to_qkv is not None:
            q, k, v = self.to_qkv(x).chunk(3, dim=-1)  # views: the kernels read them in place
        else:
            q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        qk_norm = None
        if (
            isinstance(self.norm_q, RMSNorm)
            and isinstance(self.norm_k, RMSNorm)
            and self.norm_q.eps == self.norm_k.eps
        ):
            # handed to the op, which may apply it as it loads q and k
            qk_norm = QKNorm(self.norm_q.weight, self.norm_k.weight, self.norm_q.eps)
        else:  # no norm (Identity), or modules the op does not know: applied here
            q, k = self.norm_q(q), self.norm_k(k)
        q = q.unflatten(-1, (self.heads, -1))  # [B, N, H, d]
        k = k.unflatten(-1, (self.heads, -1))
        v = v.unflatten(-1, (self.heads, -1))
        out, state = linear_attention(
            q, k, v, rope, initial_state=state, output_final_state=return_state, qk_norm=qk_norm
        )
        return self.to_out(out.flatten(2)), state


class CrossAttention(nn.Module):
    """Softmax attention from video tokens to text tokens, with an additive mask bias."""

    def __init__(
        self, dim: int, context_dim: int, heads: int, head_dim: int, qk_norm: str | None, dropout: float
    ):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(context_dim, inner)
        self.to_v = nn.Linear(context_dim, inner)
        self.norm_q = _qk_norm(qk_norm, inner)
        self.norm_k = _qk_norm(qk_norm, inner)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_bias: torch.Tensor | None) -> torch.Tensor:
        """x [B, N, D], text [B, L, D], text_bias [B, 1, 1, L] additive (0 keep, -10000 padding) or None."""
        q = self.norm_q(self.to_q(x)).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # [B, H, N, d]
        k = self.norm_k(self.to_k(text)).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # [B, H, L, d]
        v = self.to_v(text).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=text_bias)
        return self.to_out(out.transpose(1, 2).flatten(2))
