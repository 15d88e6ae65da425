"""Weight compatibility with diffusers-format checkpoints, both directions, and the 2B key set."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import SanaVideoTransformer3DModel as DiffusersSanaVideo
from safetensors.torch import load_file, save_file

from sana_video import SanaVideoTransformer3DModel
from sana_video.model.presets import preset
from tests.conftest import make_inputs, randomize, rel_err, tiny_config

CFG = tiny_config(attention_head_dim=16, cross_attention_head_dim=16, cross_attention_dim=32)


@pytest.fixture
def diffusers_model():
    torch.manual_seed(0)
    return randomize(DiffusersSanaVideo(**CFG), seed=4)


def _outputs(model, inputs):
    with torch.no_grad():
        return model(**inputs).sample


def test_diffusers_folder_loads_in_ours(diffusers_model, tmp_path):
    diffusers_model.save_pretrained(tmp_path / "transformer")
    ours = SanaVideoTransformer3DModel.from_pretrained(tmp_path / "transformer").eval()
    same_weights = SanaVideoTransformer3DModel(**CFG).eval()
    same_weights.load_state_dict(diffusers_model.state_dict())
    inputs = make_inputs(CFG, batch=2, frames=3, height=4, width=6)
    assert torch.equal(_outputs(ours, inputs), _outputs(same_weights, inputs))
    assert rel_err(_outputs(ours, inputs), _outputs(diffusers_model, inputs)) <= 1e-5


def test_our_folder_loads_in_diffusers(diffusers_model, tmp_path):
    ours = SanaVideoTransformer3DModel(**CFG).eval()
    ours.load_state_dict(diffusers_model.state_dict())
    ours.save_pretrained(tmp_path / "transformer")
    config = json.loads((tmp_path / "transformer" / "config.json").read_text())
    assert config["_class_name"] == "SanaVideoTransformer3DModel"
    reloaded = DiffusersSanaVideo.from_pretrained(tmp_path / "transformer").eval()
    theirs = reloaded.state_dict()
    assert theirs.keys() == diffusers_model.state_dict().keys()
    assert all(torch.equal(theirs[k], v) for k, v in diffusers_model.state_dict().items())  # bit for bit
    # Outputs to float rounding, not bitwise: diffusers' loader may leave the tensors memory-mapped at
    # addresses CPU kernels vectorize differently (its own save/load round trip moves them ~1e-6 too).
    inputs = make_inputs(CFG, batch=1, frames=2, height=4, width=4)
    assert rel_err(_outputs(reloaded, inputs), _outputs(diffusers_model, inputs)) <= 1e-6
    # ...and our own save/load round trip keeps every weight (outputs: the same rounding caveat).
    again = SanaVideoTransformer3DModel.from_pretrained(tmp_path / "transformer").eval()
    assert all(torch.equal(again.state_dict()[k], v) for k, v in ours.state_dict().items())
    assert rel_err(_outputs(again, inputs), _outputs(ours, inputs)) <= 1e-6


def test_config_fields_are_the_official_ones():
    ours = set(SanaVideoTransformer3DModel.from_preset("tiny").config)
    theirs = set(DiffusersSanaVideo(**CFG).config)
    assert ours == theirs


def test_bf16_load_keeps_rope_fp32_and_matches_cast(diffusers_model, tmp_path):
    """`from_pretrained(torch_dtype=bf16)` and `.to(bf16)` give the same model (REFERENCE_NOTES §7.2)."""
    diffusers_model.save_pretrained(tmp_path / "t")
    loaded = SanaVideoTransformer3DModel.from_pretrained(tmp_path / "t", torch_dtype=torch.bfloat16).eval()
    cast = SanaVideoTransformer3DModel.from_pretrained(tmp_path / "t").to(torch.bfloat16).eval()
    assert loaded.patch_embedding.weight.dtype == torch.bfloat16
    inputs = make_inputs(CFG, batch=1, frames=2, height=4, width=4)
    assert torch.equal(_outputs(loaded, inputs), _outputs(cast, inputs))
    cos, _ = loaded.rope((1, 2, 2), 0, torch.device("cpu"))
    assert cos.dtype == torch.float32


def test_missing_weight_is_an_error_not_a_random_layer(diffusers_model, tmp_path):
    diffusers_model.save_pretrained(tmp_path / "t")
    weights = tmp_path / "t" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    del tensors["transformer_blocks.1.ff.conv_temp.weight"]
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"conv_temp"):
        SanaVideoTransformer3DModel.from_pretrained(tmp_path / "t")


def test_unexpected_weight_is_an_error(diffusers_model, tmp_path):
    diffusers_model.save_pretrained(tmp_path / "t")
    weights = tmp_path / "t" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    tensors["pos_embed"] = torch.zeros(3)
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="pos_embed"):
        SanaVideoTransformer3DModel.from_pretrained(tmp_path / "t")


@pytest.mark.parametrize("name", ["2b-480p", "2b-720p"])
def test_2b_on_meta_has_the_reference_keys_and_shapes(name):
    cfg = preset(name)
    with torch.device("meta"):
        ours = SanaVideoTransformer3DModel(**cfg)
        theirs = DiffusersSanaVideo(**cfg)
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    theirs_shapes = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert ours_shapes == theirs_shapes
    assert len(ours_shapes) == 496
    if name == "2b-480p":
        assert sum(p.numel() for p in ours.parameters()) == 2_056_862_144
        assert ours_shapes["transformer_blocks.0.ff.conv_inverted.weight"] == (13440, 2240, 1, 1)
        assert ours_shapes["proj_out.weight"] == (64, 2240)


def test_guidance_embedding_keys_match():
    cfg = {**CFG, "guidance_embeds": True}
    assert set(SanaVideoTransformer3DModel(**cfg).state_dict()) == set(DiffusersSanaVideo(**cfg).state_dict())


def test_default_config_is_the_2b_480p_model():
    with torch.device("meta"):
        model = SanaVideoTransformer3DModel()
    assert model.config.mlp_ratio == 3.0
    assert sum(p.numel() for p in model.parameters()) == 2_056_862_144
