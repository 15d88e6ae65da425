"""float8 inference: per-row quantization against closed forms, the scaled fp8 matmul against its fp32
reference (torch's CPU build runs `_scaled_mm` too), and the quantized transformer against the original."""

from __future__ import annotations

import copy

import pytest
import torch

from sana_video import SanaVideoTransformer3DModel
from sana_video.model.fp8 import Fp8Linear, Fp8TemporalConv, quantize_fp8
from sana_video.ops import use_backend
from sana_video.ops.fp8_linear import FP8, fp8_linear, quantize_rows
from tests.conftest import randomize, rel_err, tiny_config


def test_rows_whose_values_fp8_holds_round_trip_exactly():
    """Each row's amax maps to 448; values that are e4m3 numbers times that scale come back bit for bit,
    and an all-zero row stays zero with a finite scale."""
    # Scales s with 448·s·fp32(1/448) = s exactly (the scale is amax times fp32(1/448), not amax / 448).
    scale = torch.tensor([[0.5], [2.0], [1.0]])
    held = torch.tensor([[448.0, 2.0, -0.5, 0.0], [-448.0, 26.0, 0.015625, 1.75], [0.0, 0.0, 0.0, 0.0]])
    t = held * scale
    t_fp8, got_scale = quantize_rows(t)
    assert t_fp8.dtype == FP8
    assert torch.equal(got_scale[:2], scale[:2]) and torch.isfinite(got_scale).all()
    assert torch.equal(t_fp8.float() * got_scale, t)


def test_rounding_is_within_e4m3_precision():
    """e4m3 keeps 3 mantissa bits: a normal number rounds by at most 2⁻⁴ of itself."""
    t = torch.randn(16, 64, generator=torch.Generator().manual_seed(0)) * 3
    t_fp8, scale = quantize_rows(t)
    back = t_fp8.float() * scale
    normal = (t / scale).abs() >= 2**-6  # below that, e4m3 is subnormal (absolute steps of 2⁻⁹)
    assert ((back - t).abs()[normal] <= t.abs()[normal] * 2**-4 + 1e-7).all()
    assert ((back - t).abs()[~normal] <= scale.expand_as(t)[~normal] * 2**-10 + 1e-7).all()


@pytest.mark.parametrize("bias", [True, False])
def test_scaled_mm_matches_the_reference_and_fp32(bias):
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(2, 9, 64, generator=gen), torch.randn(48, 64, generator=gen)
    b = torch.randn(48, generator=gen) if bias else None
    w_fp8, w_scale = quantize_rows(w)
    with use_backend("fp8_linear", "naive"):
        reference = fp8_linear(x, w_fp8, w_scale, b)
    with use_backend("fp8_linear", "scaled_mm"):
        fast = fp8_linear(x, w_fp8, w_scale, b)
    assert fast.shape == (2, 9, 48) and rel_err(fast, reference) <= 1e-6
    exact = x @ w.t() + (b if bias else 0)
    # Two roundings of ≤ 2⁻⁴ each, random in sign: ~3.5 % on random data, never near 2·2⁻⁴.
    assert rel_err(reference, exact) <= 0.06


def test_a_transposed_activation_reaches_scaled_mm_row_major(monkeypatch):
    """CUDA's `_scaled_mm` raises on a column-major first operand (the CPU build does not): at batch 1 a
    [1, N, C] view of a [1, C, N] tensor flattens to such rows. Same product as from contiguous x."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 64, 40, generator=gen).transpose(1, 2)  # [1, 40, 64], rows 1 apart in memory
    w_fp8, w_scale = quantize_rows(torch.randn(48, 64, generator=gen))
    real, seen = torch._scaled_mm, []

    def checked(a, b, **kwargs):
        seen.append(a.is_contiguous())
        return real(a, b, **kwargs)

    monkeypatch.setattr(torch, "_scaled_mm", checked)
    with use_backend("fp8_linear", "scaled_mm"):
        out = fp8_linear(x, w_fp8, w_scale)
    assert seen == [True]
    with use_backend("fp8_linear", "naive"):
        assert rel_err(out, fp8_linear(x.contiguous(), w_fp8, w_scale)) <= 1e-6


def test_bad_weights_are_refused():
    w_fp8, w_scale = quantize_rows(torch.randn(8, 16))
    with pytest.raises(ValueError, match="quantize_rows"):
        fp8_linear(torch.randn(3, 16), w_fp8.float(), w_scale)
    with pytest.raises(ValueError, match="12 features but the weight takes 16"):
        fp8_linear(torch.randn(3, 12), w_fp8, w_scale)


@torch.no_grad()
def test_a_quantized_transformer_stays_close_to_the_original():
    torch.manual_seed(0)
    config = tiny_config()
    model = randomize(SanaVideoTransformer3DModel(**config)).eval()
    gen = torch.Generator().manual_seed(2)
    x, text = torch.randn(1, 16, 3, 8, 8, generator=gen), torch.randn(1, 5, 16, generator=gen)
    t = torch.tensor([500.0])
    first = model(x, text, t, return_state=True)
    expected = model(x, text, t, state=first.state, frame_offset=3).sample

    replaced = quantize_fp8(model)
    # per block: self-attention qkv (fused), out; cross-attention q, k, v, out; 2 pointwise convs; temporal conv
    assert replaced == 9 * config["num_layers"]
    block = model.transformer_blocks[0]
    assert isinstance(block.ff.conv_temp, Fp8TemporalConv) and isinstance(block.attn1.to_qkv, Fp8Linear)
    first_q = model(x, text, t, return_state=True)
    out = model(x, text, t, state=first_q.state, frame_offset=3).sample
    assert rel_err(first_q.sample, first.sample) <= 0.1
    assert rel_err(out, expected) <= 0.1
    assert rel_err(out, expected) > 1e-4  # it did run in fp8


@torch.no_grad()
def test_fused_qkv_is_the_three_projections():
    """Stacking q, k, v into one layer changes no number: in bf16 (the weights copied), and in float8 (per
    input row and per weight row scales: the same quantized values, the same products)."""
    config = tiny_config(attention_bias=True)
    model = randomize(SanaVideoTransformer3DModel(**config)).eval()
    gen = torch.Generator().manual_seed(3)
    x, text = torch.randn(2, 16, 3, 8, 8, generator=gen), torch.randn(2, 5, 16, generator=gen)
    t = torch.tensor([500.0, 20.0])
    expected = model(x, text, t).sample
    fused = copy.deepcopy(model)
    for block in fused.transformer_blocks:
        block.attn1.fuse_projections()
    assert not hasattr(fused.transformer_blocks[0].attn1, "to_q")
    assert rel_err(fused(x, text, t).sample, expected) <= 1e-6
    separate = copy.deepcopy(model)
    assert quantize_fp8(separate, fuse_qkv=False) == 11 * config["num_layers"]
    assert quantize_fp8(model) == 9 * config["num_layers"]
    assert rel_err(model(x, text, t).sample, separate(x, text, t).sample) <= 1e-6
