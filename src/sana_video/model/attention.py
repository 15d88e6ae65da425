"""Self-attention (ReLU linear, with state) and cross-attention to the text (softmax)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sana_video.model.layers import RMSNorm
from sana_video.ops import LinearAttentionState, linear_attention

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

    def forward(
        self,
        x: torch.Tensor,  # [B, N, D]
        rope: tuple[torch.Tensor, torch.Tensor],
        state: LinearAttentionState | None,
        return_state: bool,
    ) -> tuple[torch.Tensor, LinearAttentionState | None]:
        q = self.norm_q(self.to_q(x)).unflatten(-1, (self.heads, -1))  # [B, N, H, d]
        k = self.norm_k(self.to_k(x)).unflatten(-1, (self.heads, -1))
        v = self.to_v(x).unflatten(-1, (self.heads, -1))
        out, state = linear_attention(q, k, v, rope, initial_state=state, output_final_state=return_state)
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
