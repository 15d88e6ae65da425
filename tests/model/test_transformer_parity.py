"""Our transformer against diffusers' SanaVideoTransformer3DModel and the float64 reference, same weights."""

from __future__ import annotations

import pytest
import torch
from diffusers import SanaVideoTransformer3DModel as DiffusersSanaVideo

from sana_video import SanaVideoTransformer3DModel
from tests import reference
from tests.conftest import make_inputs, randomize, rel_err, tiny_config

# Each case differs from the others in several of: head dim (so the RoPE t/h/w split differs),
# patch size, guidance embedding, batch, frame count, text padding, per-token timesteps, FFN ratio,
# attention bias, FFN pre-norm affine, channel counts.
CASES = {
    "d12-patch122-b2": (tiny_config(), dict(batch=2, frames=3)),
    "d16-patch111-guidance-pertoken": (
        tiny_config(
            attention_head_dim=16, cross_attention_head_dim=16, cross_attention_dim=32, patch_size=(1, 1, 1)
        ),
        dict(batch=1, frames=5, height=4, width=6, per_token=True, guidance=True),
    ),
    "d20-3heads-bias-mlp3-pertoken": (
        tiny_config(
            num_attention_heads=3,
            attention_head_dim=20,
            num_cross_attention_heads=3,
            cross_attention_head_dim=20,
            cross_attention_dim=60,
            mlp_ratio=3.0,
            attention_bias=True,
        ),
        dict(batch=2, frames=1, height=8, width=12, per_token=True),
    ),
    "d24-1head-patch111-affine-guidance": (
        tiny_config(
            num_attention_heads=1,
            attention_head_dim=24,
            num_cross_attention_heads=4,
            cross_attention_head_dim=6,
            cross_attention_dim=24,
            patch_size=(1, 1, 1),
            norm_elementwise_affine=True,
        ),
        dict(batch=2, frames=7, height=3, width=5, guidance=True),
    ),
    "d32-3layers-8ch-nonsquare": (
        tiny_config(
            in_channels=8,
            out_channels=8,
            attention_head_dim=32,
            cross_attention_head_dim=32,
            cross_attention_dim=64,
            num_layers=3,
            caption_channels=12,
        ),
        dict(batch=1, frames=5, height=12, width=20, text_len=9),
    ),
    "d12-no-qknorm-unpadded": (
        tiny_config(qk_norm=None, out_channels=32),
        dict(batch=2, frames=2, height=6, width=4, padded=False),
    ),
}


def _build(case: str, dtype=torch.float32):
    cfg, shape = CASES[case]
    shape = dict(shape)
    if shape.pop("guidance", False):
        cfg = {**cfg, "guidance_embeds": True}
    torch.manual_seed(1)  # the same base weights for every dtype
    reference_model = randomize(DiffusersSanaVideo(**cfg), seed=1)
    ours = SanaVideoTransformer3DModel(**cfg).eval()
    ours.load_state_dict(reference_model.state_dict(), strict=True)
    if dtype != torch.float32:
        reference_model.to(dtype)
        ours.to(dtype)
        # `.to()` casts diffusers' RoPE buffers too; its own `from_pretrained(torch_dtype=...)` keeps them
        # fp32 (REFERENCE_NOTES §7.2). We keep them fp32 always, so compare against that behaviour.
        reference_model.rope.freqs_cos = reference_model.rope.freqs_cos.float()
        reference_model.rope.freqs_sin = reference_model.rope.freqs_sin.float()
    return cfg, make_inputs(cfg, **shape), ours, reference_model


def _cast_features(inputs: dict, dtype: torch.dtype) -> dict:
    # diffusers' model expects latents and text features already in its dtype.
    cast = ("hidden_states", "encoder_hidden_states")
    return {k: v.to(dtype) if k in cast else v for k, v in inputs.items()}


def test_at_least_five_cases_cover_the_axes():
    head_dims = {cfg["attention_head_dim"] for cfg, _ in CASES.values()}
    patches = {tuple(cfg["patch_size"]) for cfg, _ in CASES.values()}
    assert len(CASES) >= 5 and len(head_dims) >= 4 and patches == {(1, 2, 2), (1, 1, 1)}
    assert {s.get("batch") for _, s in CASES.values()} == {1, 2}
    assert any(s.get("guidance") for _, s in CASES.values()) and any(
        s.get("per_token") for _, s in CASES.values()
    )


@pytest.mark.parametrize("case", CASES)
def test_fp32_matches_diffusers(case):
    _, inputs, ours, ref = _build(case)
    with torch.no_grad():
        expected = ref(**inputs).sample
        got = ours(**inputs).sample
    assert got.shape == expected.shape
    assert rel_err(got, expected) <= 1e-5


@pytest.mark.parametrize("case", CASES)
def test_fp32_matches_float64_reference(case):
    cfg, inputs, ours, _ = _build(case)
    with torch.no_grad():
        got = ours(**inputs).sample
    expected = reference.forward(
        ours.state_dict(),
        cfg,
        inputs["hidden_states"],
        inputs["encoder_hidden_states"],
        inputs["timestep"],
        inputs.get("encoder_attention_mask"),
        inputs.get("guidance"),
    )
    assert rel_err(got, expected) <= 1e-5


@pytest.mark.parametrize("case", CASES)
def test_bf16_matches_diffusers(case):
    _cfg, inputs, ours, ref = _build(case, torch.bfloat16)
    with torch.no_grad():
        expected = ref(**_cast_features(inputs, torch.bfloat16)).sample
        got = ours(**inputs).sample  # ours casts its inputs to the model dtype
    assert got.dtype == torch.bfloat16
    assert rel_err(got, expected) <= 2e-2


def test_bf16_is_as_close_to_fp32_as_diffusers_bf16():
    """Our fp32 linear-attention normalizer must not cost accuracy (it should gain some)."""
    _, inputs, _ours32, ref32 = _build("d32-3layers-8ch-nonsquare")
    _, _, ours16, ref16 = _build("d32-3layers-8ch-nonsquare", torch.bfloat16)
    with torch.no_grad():
        truth = ref32(**inputs).sample
        ours_err = rel_err(ours16(**inputs).sample, truth)
        ref_err = rel_err(ref16(**_cast_features(inputs, torch.bfloat16)).sample, truth)
    assert ours_err <= 1.25 * ref_err


def test_scalar_timestep_equals_per_token_constant_timestep():
    _cfg, inputs, ours, _ = _build("d12-patch122-b2")
    t = inputs["timestep"]
    per_token = t[:, None, None, None, None].expand(-1, 1, 3, 4, 4)
    with torch.no_grad():
        a = ours(**inputs).sample
        b = ours(**{**inputs, "timestep": per_token}).sample
    assert rel_err(b, a) <= 1e-6
