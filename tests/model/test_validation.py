"""Bad input raises ValueError naming the value and the rule."""

from __future__ import annotations

import math

import pytest
import torch

from sana_video import SanaVideoTransformer3DModel
from tests.conftest import make_inputs, tiny_config

CFG = tiny_config()


@pytest.fixture(scope="module")
def model():
    return SanaVideoTransformer3DModel(**CFG).eval()


@pytest.fixture
def inputs():
    return make_inputs(CFG, batch=2, frames=3, height=8, width=8, text_len=6)


def _call(model, inputs, **change):
    with torch.no_grad():
        return model(**{**inputs, **change})


@pytest.mark.parametrize(
    "change, pattern",
    [
        (dict(hidden_states=torch.zeros(2, 8, 3, 8, 8)), r"8 channels; this model takes in_channels=16"),
        (dict(hidden_states=torch.zeros(2, 16, 8, 8)), r"\[B, C, F, H, W\]"),
        (
            dict(hidden_states=torch.zeros(2, 16, 3, 7, 8)),
            r"latent height must be a positive multiple of the patch size 2 \(got 7\)",
        ),
        (dict(hidden_states=torch.zeros(2, 16, 3, 8, 9)), r"latent width .* \(got 9\)"),
        (dict(encoder_hidden_states=torch.zeros(2, 6, 15)), r"caption_channels=16.*\(2, 6, 15\)"),
        (dict(encoder_hidden_states=torch.zeros(1, 6, 16)), r"B=2.*\(1, 6, 16\)"),
        (
            dict(encoder_attention_mask=torch.ones(2, 5)),
            r"encoder_attention_mask must be \[B, L\] = \(2, 6\).*\(2, 5\)",
        ),
        (dict(timestep=torch.zeros(3)), r"one value per sample \(2\) or per token .*got 3 values"),
        (dict(timestep=torch.tensor([float("nan"), 1.0])), r"timestep contain NaN"),
        (dict(guidance=torch.ones(2)), r"guidance_embeds=False"),
        (dict(frame_offset=-1), r"frame_offset must be a non-negative .* \(got -1\)"),
        (dict(frame_offset=30), r"positions exceed the RoPE table of 32 .* frames 30\.\.32"),
        (dict(hidden_states=torch.zeros(2, 16, 3, 8, 66)), r"RoPE table of 32 .* cols 33"),
    ],
)
def test_bad_input_raises(model, inputs, change, pattern):
    with pytest.raises(ValueError, match=pattern):
        _call(model, inputs, **change)


def test_non_finite_latents_raise(model, inputs):
    x = inputs["hidden_states"].clone()
    x[1, 0, 2, 3, 4] = math.inf
    with pytest.raises(ValueError, match="hidden_states contain NaN or infinite values"):
        _call(model, inputs, hidden_states=x)


def test_unchecked_inputs_skip_the_finiteness_check_only_within(model, inputs):
    """The long-video loop skips the per-call check (a GPU wait) and checks each chunk instead."""
    x = inputs["hidden_states"].clone()
    x[0, 0, 0, 0, 0] = math.nan
    with model.unchecked_inputs(), torch.no_grad():
        out = model(**{**inputs, "hidden_states": x}).sample
    assert torch.isnan(out).any()
    with pytest.raises(RuntimeError), model.unchecked_inputs():
        raise RuntimeError  # the check comes back after a failure too
    with pytest.raises(ValueError, match="hidden_states contain NaN"):
        _call(model, inputs, hidden_states=x)


def test_missing_guidance_raises():
    model = SanaVideoTransformer3DModel(**{**CFG, "guidance_embeds": True})
    inputs = make_inputs(CFG, batch=1)  # no guidance drawn: CFG has no guidance_embeds
    with pytest.raises(ValueError, match=r"guidance_embeds=True, guidance=None"):
        _call(model, inputs)


def test_state_from_another_resolution_raises(model, inputs):
    with torch.no_grad():
        state = model(**inputs, return_state=True).state
    small = {**inputs, "hidden_states": inputs["hidden_states"][..., :4, :4]}
    with pytest.raises(ValueError, match=r"chunks of one video must share batch size and resolution"):
        _call(model, small, state=state, frame_offset=3)


def test_reading_a_state_at_an_overlapping_offset_raises(model, inputs):
    with torch.no_grad():
        state = model(**inputs, return_state=True).state
    with pytest.raises(
        ValueError, match=r"frame_offset 0 overlaps the state, .* frames 0\.\.2: .* frame_offset=3"
    ):
        _call(model, inputs, state=state)


def test_frames_beyond_rope_table_raise_for_chunks(model, inputs):
    """A chunk is checked at its absolute position: frames 30..32 do not fit a 32-position table."""
    with pytest.raises(ValueError, match="RoPE"):
        _call(model, inputs, frame_offset=30)
    _call(model, inputs, frame_offset=29)  # frames 29..31 fit


@pytest.mark.parametrize(
    "change, pattern",
    [
        (dict(cross_attention_dim=16), r"cross_attention_dim must equal .* = 24"),
        (dict(qk_norm="layer_norm"), r"qk_norm must be one of"),
        (dict(attention_head_dim=13, cross_attention_dim=26), r"attention_head_dim must be even"),
        (dict(patch_size=(2, 2)), r"patch_size must be three positive ints"),
    ],
)
def test_bad_config_raises(change, pattern):
    with pytest.raises(ValueError, match=pattern):
        SanaVideoTransformer3DModel(**{**CFG, **change})


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(
        ValueError, match=r"unknown preset 'huge'; choose one of \['2b-480p', '2b-720p', 'tiny'\]"
    ):
        SanaVideoTransformer3DModel.from_preset("huge")
