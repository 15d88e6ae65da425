"""The whole transformer with every Triton kernel forced against its default path (the model's own
PyTorch math, which the model tests compare with diffusers). On a machine without a GPU the kernels run
in Triton's interpreter (tests/conftest.py), so the model is tiny."""

from __future__ import annotations

import contextlib

import pytest
import torch

from sana_video import SanaVideoTransformer3DModel
from sana_video.ops import use_backend
from tests.conftest import randomize, rel_err, tiny_config

triton = pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
FUSED = ("linear_attention", "silu_dwconv_glu", "layer_norm_modulate", "rms_norm")


@torch.no_grad()
def test_every_kernel_inside_the_model_matches_the_default_path():
    torch.manual_seed(0)
    model = randomize(SanaVideoTransformer3DModel(**tiny_config())).to(DEVICE).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 3, 8, 12, generator=gen).to(DEVICE)  # 3 frames of 4 × 6 tokens
    text = torch.randn(2, 5, 16, generator=gen).to(DEVICE)
    t = torch.tensor([300.0, 800.0], device=DEVICE)
    first = model(x, text, t, return_state=True)
    expected = model(x, text, t, state=first.state, frame_offset=3).sample
    with contextlib.ExitStack() as stack:
        for op in FUSED:
            stack.enter_context(use_backend(op, "triton"))
        first_fused = model(x, text, t, return_state=True)
        out = model(x, text, t, state=first_fused.state, frame_offset=3).sample
    assert rel_err(first_fused.sample, first.sample) <= 1e-5
    assert rel_err(out, expected) <= 1e-5  # a chunk reading the state the fused path wrote
