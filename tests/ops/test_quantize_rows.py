"""The one-pass Triton `quantize_rows` against the torch version (the reference: amax per row, scale,
divide, clamp, round to e4m3) and against closed forms. On a machine without a GPU the kernel runs in
Triton's interpreter (tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch

from sana_video.ops import dispatch, use_backend
from sana_video.ops.fp8_linear import FP8, quantize_rows

triton_quantize = pytest.importorskip("sana_video.ops.fp8_linear.triton_quantize", exc_type=ImportError)
from sana_video.ops.triton_support import INTERPRET  # noqa: E402

if not (INTERPRET or torch.cuda.is_available()):
    pytest.skip("triton was imported without TRITON_INTERPRET=1 and there is no GPU", allow_module_level=True)
DEVICE = "cpu" if INTERPRET else "cuda"


def _both(t):
    with use_backend("quantize_rows", "torch"):
        expected = quantize_rows(t)
    with use_backend("quantize_rows", "triton"):
        got = quantize_rows(t)
    return got, expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(7, 64), (5, 100), (3, 2240), (1, 33)])
def test_triton_quantization_is_the_reference_bit_for_bit(dtype, shape):
    """Rows of several widths (a power of two, padded blocks, the model's 2240), values spread over many
    binades (subnormal e4m3 results included), one row with a huge outlier, one all-zero row."""
    gen = torch.Generator().manual_seed(0)
    t = (
        torch.randn(shape, generator=gen)
        * torch.logspace(-3, 3, shape[1])[torch.randperm(shape[1], generator=gen)]
    )
    t[0, shape[1] // 2] = 1e4
    t[-1] = 0.0
    t = t.to(dtype).to(DEVICE)
    (q, scale), (q_ref, scale_ref) = _both(t)
    assert q.dtype == FP8 and q.shape == t.shape and scale.shape == (shape[0], 1)
    assert torch.equal(scale, scale_ref)
    assert torch.equal(q.view(torch.uint8), q_ref.view(torch.uint8))


@pytest.mark.parametrize("rows_per_program, chunk, warps", [(4, 32, 4), (2, 4096, 4), (8, 64, 8)])
def test_every_tiling_is_the_reference(monkeypatch, rows_per_program, chunk, warps):
    """Rows longer than a block (two passes over each row) and row counts that do not divide evenly."""
    monkeypatch.setitem(triton_quantize.CONFIG, "rows", rows_per_program)
    monkeypatch.setitem(triton_quantize.CONFIG, "chunk", chunk)
    monkeypatch.setitem(triton_quantize.CONFIG, "warps", warps)
    t = (torch.randn(11, 100, generator=torch.Generator().manual_seed(3)) * 5).to(DEVICE)
    (q, scale), (q_ref, scale_ref) = _both(t)
    assert torch.equal(scale, scale_ref) and torch.equal(q.view(torch.uint8), q_ref.view(torch.uint8))


def test_rows_of_a_strided_view_are_read_where_they_are():
    """A view with a row stride wider than its columns (a slice of a wider matrix)."""
    wide = torch.randn(6, 96, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    (q, scale), (q_ref, scale_ref) = _both(wide[:, 16:80])
    assert torch.equal(scale, scale_ref) and torch.equal(q.view(torch.uint8), q_ref.view(torch.uint8))


def test_values_fp8_holds_round_trip_exactly():
    scale = torch.tensor([[0.5], [2.0]])  # 448·s·fp32(1/448) = s exactly
    held = torch.tensor([[448.0, 2.0, -0.5, 0.0], [-448.0, 26.0, 0.015625, 1.75]])
    with use_backend("quantize_rows", "triton"):
        q, got = quantize_rows((held * scale).to(DEVICE))
    assert torch.equal(got.cpu(), scale)
    assert torch.equal(q.float().cpu() * scale, held * scale)


def test_cuda_half_tensors_get_the_triton_kernel():
    t = torch.zeros(2, 16, dtype=torch.bfloat16)
    assert dispatch.resolve("quantize_rows", t).__module__.endswith("fp8_linear")  # CPU: torch
    if torch.cuda.is_available():
        assert dispatch.resolve("quantize_rows", t.cuda()) is triton_quantize.quantize_rows
