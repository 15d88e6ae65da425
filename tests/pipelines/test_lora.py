"""LoRA files in the diffusers/PEFT format, made with diffusers, used by our pipeline."""

from __future__ import annotations

import pytest
import torch
from diffusers import SanaVideoPipeline as DiffusersT2V
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from sana_video import SanaVideoPipeline
from tests.pipelines.test_parity import _quiet, _run

KWARGS = dict(prompt="a red circle moving right")


@pytest.fixture(scope="module")
def lora(t2v_dir, tmp_path_factory):
    """Random LoRA on the attention projections of diffusers' transformer; the pipeline that made it."""
    reference = _quiet(DiffusersT2V.from_pretrained(t2v_dir))
    torch.manual_seed(0)
    config = LoraConfig(
        r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
    )
    reference.transformer.add_adapter(config, adapter_name="style")
    folder = tmp_path_factory.mktemp("lora")
    DiffusersT2V.save_lora_weights(
        folder, transformer_lora_layers=get_peft_model_state_dict(reference.transformer, adapter_name="style")
    )
    return folder, reference


def _max_diff(a, b) -> float:
    return (a - b).abs().max().item()


def test_lora_changes_the_output_as_in_diffusers(t2v_dir, lora):
    folder, made_with = lora
    ours = _quiet(SanaVideoPipeline.from_pretrained(t2v_dir))
    base = _run(ours, **KWARGS)
    ours.load_lora_weights(folder, adapter_name="style")
    with_lora = _run(ours, **KWARGS)
    assert _max_diff(with_lora, base) > 1e-3
    assert _max_diff(with_lora, _run(made_with, **KWARGS)) <= 1e-4  # the adapter as it was trained

    reloaded = _quiet(DiffusersT2V.from_pretrained(t2v_dir))
    reloaded.load_lora_weights(folder, adapter_name="style")
    for weight in (0.5, 1.5):  # set_adapters with a weight, in both pipelines
        ours.set_adapters(["style"], [weight])
        reloaded.set_adapters(["style"], [weight])
        assert _max_diff(_run(ours, **KWARGS), _run(reloaded, **KWARGS)) <= 1e-4

    ours.set_adapters(["style"], [1.0])
    ours.fuse_lora()
    assert _max_diff(_run(ours, **KWARGS), with_lora) <= 1e-5
    ours.unfuse_lora()
    assert _max_diff(_run(ours, **KWARGS), with_lora) <= 1e-5

    ours.unload_lora_weights()
    assert _max_diff(_run(ours, **KWARGS), base) <= 1e-6


def test_lora_scale_through_attention_kwargs(t2v_dir, lora):
    folder, _ = lora
    ours = _quiet(SanaVideoPipeline.from_pretrained(t2v_dir))
    base = _run(ours, **KWARGS)
    ours.load_lora_weights(folder)
    off = _run(ours, **KWARGS, attention_kwargs={"scale": 0.0})
    assert _max_diff(off, base) <= 1e-6
