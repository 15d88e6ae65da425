"""One SANA-Video transformer block."""

from __future__ import annotations

import torch
from torch import nn

from sana_video.model.attention import CrossAttention, LinearSelfAttention
from sana_video.model.layers import modulate
from sana_video.model.mixffn import MixFFN
from sana_video.model.state import LayerState
from sana_video.ops.norms import layer_norm_modulate


class SanaVideoBlock(nn.Module):
    """x += gate₁·LinearAttn(adaLN(x)); x += CrossAttn(x, text); x += gate₂·MixFFN(adaLN(x))."""

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        cross_heads: int,
        cross_head_dim: int,
        cross_attention_dim: int,
        mlp_ratio: float,
        attention_bias: bool,
        qk_norm: str | None,
        norm_eps: float,
        norm_elementwise_affine: bool,
        dropout: float,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=False)
        self.attn1 = LinearSelfAttention(dim, heads, head_dim, attention_bias, qk_norm, dropout)
        # Cross-attention reads the raw residual stream; norm2 is the FFN's pre-norm.
        self.attn2 = CrossAttention(dim, cross_attention_dim, cross_heads, cross_head_dim, qk_norm, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_elementwise_affine)
        self.ff = MixFFN(dim, mlp_ratio)
        self.scale_shift_table = nn.Parameter(torch.empty(6, dim))

    def forward(
        self,
        x: torch.Tensor,  # [B, N, D]
        text: torch.Tensor,  # [B, L, D]
        text_bias: torch.Tensor | None,  # [B, 1, 1, L]
        mod: torch.Tensor,  # [B, 1 or N, 6D]
        grid: tuple[int, int, int],
        rope: tuple[torch.Tensor, torch.Tensor],
        state: LayerState | None,
        return_state: bool,
    ) -> tuple[torch.Tensor, LayerState | None]:
        # 1. Modulation: the learned table plus the timestep's projection
        shift1, scale1, gate1, shift2, scale2, gate2 = (
            self.scale_shift_table + mod.unflatten(-1, (6, -1))
        ).unbind(-2)
        context, left_frame = (state.attention, state.last_frame) if state is not None else (None, None)
        # 2. Linear self-attention (reads the earlier chunks' sums)
        attn, attn_state = self.attn1(
            self._pre_norm(self.norm1, x, shift1, scale1), rope, context, return_state
        )
        x = x + gate1 * attn
        # 3. Cross-attention to the text, no norm, no gate
        x = x + self.attn2(x, text, text_bias)
        # 4. Mix-FFN (its temporal conv reads the previous chunk's last frame)
        ff, last_frame = self.ff(
            self._pre_norm(self.norm2, x, shift2, scale2), grid, left_frame, return_state
        )
        x = x + gate2 * ff
        return x, (LayerState(attn_state, last_frame) if return_state else None)

    @staticmethod
    def _pre_norm(norm: nn.LayerNorm, x, shift, scale) -> torch.Tensor:
        """adaLN: LayerNorm then modulation, one op (ops.norms) unless the norm has learned weights."""
        if norm.weight is None:
            return layer_norm_modulate(x, shift, scale, norm.eps)
        return modulate(norm(x), shift, scale)
