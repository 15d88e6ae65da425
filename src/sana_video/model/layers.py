"""Small building blocks shared by the transformer's modules."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sana_video.ops.norms import rms_norm


class RMSNorm(nn.Module):
    """RMSNorm with a learned scale; statistics in fp32, output in the input dtype."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fp32 statistics and product; a half weight rounds the normed x first, like the reference
        return rms_norm(x, self.weight, self.eps)


class PointwiseConv(nn.Module):
    """A 1×1 convolution stored as the checkpoint's Conv2d weight [out, in, 1, 1], applied to tokens.

    On the token layout [..., in] a 1×1 conv is a matmul over channels, so we run it as one and avoid
    permuting activations to NCHW and back.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.flatten(1), self.bias)

    def extra_repr(self) -> str:
        out_channels, in_channels = self.weight.shape[:2]
        return f"{in_channels}, {out_channels}, bias={self.bias is not None}"


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation; shift/scale are [B, 1 or N, D] (per sample or per token)."""
    return x * (1 + scale) + shift


def layer_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over channels without affine parameters."""
    return F.layer_norm(x, x.shape[-1:], eps=eps)
