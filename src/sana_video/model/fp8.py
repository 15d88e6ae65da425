"""float8 inference: the transformer blocks' matmuls with fp8 weights and dynamic per-token scales.

    quantize_fp8(transformer)   # in place; returns how many layers now run in fp8

Every matmul of every block is replaced: the attention projections (nn.Linear; the self-attention's q, k
and v stacked into one), the Mix-FFN's 1×1 convs (`PointwiseConv`) and the temporal conv (its three taps
as one matmul). The embeddings, the time MLP and
the output projection stay as they are (small, and the first and last layers are the most sensitive).
Weights are quantized once, per output row; activations per row (token) at every call (`ops.fp8_linear`).
Inference only: the fp8 weights are buffers, not parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from sana_video.model.layers import PointwiseConv
from sana_video.model.mixffn import TemporalConv
from sana_video.ops.fp8_linear import fp8_linear, quantize_rows


class Fp8Linear(nn.Module):
    """y = x Wᵀ + b with W in float8 (per-row scales) and x quantized per row when called."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        weight_fp8, weight_scale = quantize_rows(weight.detach())
        self.register_buffer("weight", weight_fp8)
        self.register_buffer("weight_scale", weight_scale)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fp8_linear(x, self.weight, self.weight_scale, self.bias)

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        return f"{in_features}, {out_features}, bias={self.bias is not None}, float8 e4m3"


class Fp8TemporalConv(TemporalConv):
    """`TemporalConv` whose one matmul of all three taps is an `Fp8Linear` (per-row weight scales: each
    row belongs to one tap, so they are the scales each tap would have on its own)."""

    def __init__(self, conv: TemporalConv):
        nn.Module.__init__(self)
        self.linear = Fp8Linear(conv.weight[..., 0].permute(2, 0, 1).flatten(0, 1), None)

    def taps(self, y: torch.Tensor) -> torch.Tensor:
        return self.linear(y).unflatten(-1, (3, -1))


def _fp8_twin(module: nn.Module) -> nn.Module | None:
    if isinstance(module, nn.Linear):
        return Fp8Linear(module.weight, module.bias)
    if isinstance(module, PointwiseConv):
        return Fp8Linear(module.weight.flatten(1), module.bias)
    if isinstance(module, TemporalConv) and not isinstance(module, Fp8TemporalConv):
        return Fp8TemporalConv(module)
    return None


@torch.no_grad()
def quantize_fp8(transformer: nn.Module, fuse_qkv: bool = True) -> int:
    """Replace every matmul layer inside `transformer.transformer_blocks` by its float8 twin, in place.
    fuse_qkv first stacks each self-attention's q, k and v projections into one layer, so its input is
    quantized once, not three times (the same numbers: the scales are per input row and per weight row).
    Returns the number of layers replaced."""
    replaced = 0
    for block in transformer.transformer_blocks:
        if fuse_qkv:
            block.attn1.fuse_projections()
        for name, module in list(block.named_modules()):
            twin = _fp8_twin(module)
            if twin is None:
                continue
            # The twin is built from the module's own tensors, so it is already on their device.
            parent_name, _, child = name.rpartition(".")
            setattr(block.get_submodule(parent_name), child, twin)
            replaced += 1
    return replaced
