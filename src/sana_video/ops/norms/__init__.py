"""Fused forward kernels for the transformer's norms and the Mix-FFN gate, with fp32 references.

    layer_norm_modulate(x, shift, scale, eps)  LayerNorm over D (no affine), then y·(1 + scale) + shift
    rms_norm(x, weight, eps)                   RMSNorm with a learned weight, as `model.layers.RMSNorm`
    glu_gate(y, silu_input=False)              u·SiLU(g) for u, g = y.chunk(2, -1), as in `MixFFN`

The kernels' statistics and math are fp32, outputs are in x's (y's) dtype. The Triton kernels run on
CUDA tensors where forced with `ops.use_backend(op, "triton")` (opt-in: inside the compiled 2B step on
an H200 they made it slower, 0.527 s against 0.492, as Inductor fuses the modulation and residual math
around its own norms; docs/PERFORMANCE.md); otherwise the model's own math does (`eager.py` for the LayerNorm, the references in `naive.py`
for the others). The block and `RMSNorm` call these ops. The tests force the kernels on the CPU through Triton's
interpreter.
"""

from __future__ import annotations

import torch

from sana_video.ops import dispatch
from sana_video.ops.norms import eager, naive

try:
    from sana_video.ops.norms import triton_kernels
except ImportError:  # no triton in this environment: the references serve
    triton_kernels = None


def triton_available(x: torch.Tensor) -> bool:
    """Triton is importable, x is a CUDA tensor and needs no gradient (the kernels are forward only).
    (Under TRITON_INTERPRET=1 the kernels also run on CPU tensors, but only where a test forces them:
    interpreted, they are far slower than the reference.)"""
    return triton_kernels is not None and x.is_cuda and not x.requires_grad


def layer_norm_modulate(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """x [B, N, D]; shift, scale [B, 1, D] (per sample) or [B, N, D] (per token) -> [B, N, D] in x's dtype."""
    if x.ndim != 3 or shift.shape[-1] != x.shape[-1] or scale.shape[-1] != x.shape[-1]:
        raise ValueError(
            f"need x [B, N, D] and shift, scale [B, 1 or N, D]; got {tuple(x.shape)}, "
            f"{tuple(shift.shape)}, {tuple(scale.shape)}"
        )
    return dispatch.resolve("layer_norm_modulate", x)(x, shift, scale, eps)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """x [..., D], weight [D] -> [..., D] in x's dtype (a half weight rounds first, as `RMSNorm`)."""
    if weight.shape != x.shape[-1:]:
        raise ValueError(f"weight must be [{x.shape[-1]}]; got {tuple(weight.shape)}")
    return dispatch.resolve("rms_norm", x)(x, weight, eps)


def glu_gate(y: torch.Tensor, silu_input: bool = False) -> torch.Tensor:
    """y [..., 2h] -> u·SiLU(g) [..., h] in y's dtype, where u, g = y.chunk(2, -1).

    In `MixFFN` y is the depthwise conv's output, whose input already went through SiLU; so the
    default applies no SiLU to y. `silu_input=True` computes u·SiLU(g) for u, g = SiLU(y).chunk(2, -1),
    for use only where no conv sits between the two activations.
    """
    if y.shape[-1] % 2:
        raise ValueError(f"the last dim must be even (u and gate halves); got {y.shape[-1]}")
    return dispatch.resolve("glu_gate", y)(y, silu_input)


# The model's own math is the default: `eager` for the LayerNorm (it rounds as the checkpoints' code does);
# for RMSNorm and the gate the fp32 references are that math already.
dispatch.register("layer_norm_modulate", "eager", eager.layer_norm_modulate, priority=0)
dispatch.register("layer_norm_modulate", "naive", naive.layer_norm_modulate, priority=-1)
for _op in ("rms_norm", "glu_gate"):
    dispatch.register(_op, "naive", getattr(naive, _op), priority=0)
if triton_kernels is not None:
    for _op, _fn in (
        (
            "layer_norm_modulate",
            triton_kernels.layer_norm_modulate_op,
        ),  # custom ops: compile calls them as they are
        ("rms_norm", triton_kernels.rms_norm_op),
        ("glu_gate", triton_kernels.glu_gate),
    ):
        # Opt-in (negative priority): slower than Inductor's fusions inside the compiled model.
        dispatch.register(_op, "triton", _fn, priority=-1, available=triton_available)


__all__ = ["glu_gate", "layer_norm_modulate", "rms_norm", "triton_available"]
