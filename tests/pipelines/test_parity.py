"""Our pipelines against diffusers' on the same saved folder, inputs and seeds (fp32 CPU)."""

from __future__ import annotations

import pytest
import torch
from diffusers import SanaImageToVideoPipeline as DiffusersI2V
from diffusers import SanaVideoPipeline as DiffusersT2V

from sana_video import SanaImageToVideoPipeline, SanaVideoPipeline, SanaVideoTransformer3DModel
from tests.pipelines.components import i2v_scheduler

BASE = dict(
    negative_prompt="",
    num_inference_steps=3,
    height=32,
    width=32,
    frames=9,
    max_sequence_length=16,
    output_type="pt",
    use_resolution_binning=False,
)


def _quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def t2v_pair(t2v_dir):
    return _quiet(DiffusersT2V.from_pretrained(t2v_dir)), _quiet(SanaVideoPipeline.from_pretrained(t2v_dir))


def _run(pipe, seed=0, **kwargs):
    return pipe(**{**BASE, **kwargs}, generator=torch.Generator().manual_seed(seed)).frames


def test_loads_our_transformer(t2v_pair):
    assert isinstance(t2v_pair[1].transformer, SanaVideoTransformer3DModel)


T2V_CASES = {
    "chi+cfg": dict(prompt="a red circle moving right"),
    "no-chi": dict(prompt="a red circle moving right", complex_human_instruction=[]),
    "no-cfg": dict(prompt="a blue square moves up", guidance_scale=1.0),
    "two-videos": dict(prompt="a green star", num_videos_per_prompt=2),
    "two-prompts": dict(prompt=["a cat moves left", "a dog on a plain white background"]),
    "negative-prompt": dict(prompt="a yellow triangle", negative_prompt="black background"),
    "latent-output": dict(prompt="a red circle", output_type="latent"),
}


@pytest.mark.parametrize("case", T2V_CASES)
def test_t2v_matches_diffusers(t2v_pair, case):
    reference, ours = t2v_pair
    expected, got = _run(reference, **T2V_CASES[case]), _run(ours, **T2V_CASES[case])
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-4


def test_t2v_prompt_embeds_input_matches_diffusers(t2v_pair):
    reference, ours = t2v_pair
    embeds, mask, neg, neg_mask = reference.encode_prompt("a red circle", max_sequence_length=16)
    inputs = dict(
        prompt_embeds=embeds,
        prompt_attention_mask=mask,
        negative_prompt_embeds=neg,
        negative_prompt_attention_mask=neg_mask,
        negative_prompt=None,
    )
    expected, got = _run(reference, **inputs), _run(ours, **inputs)
    assert (got - expected).abs().max().item() <= 1e-4
    # ...and our own encoding of the same prompt gives the same embeddings.
    for a, b in zip(
        ours.encode_prompt("a red circle", max_sequence_length=16), (embeds, mask, neg, neg_mask)
    ):
        assert torch.equal(a, b)


def test_t2v_output_is_in_range_and_not_constant(t2v_pair):
    frames = _run(t2v_pair[1], prompt="a red circle")
    assert frames.shape == (1, 9, 3, 32, 32) and frames.min() >= 0 and frames.max() <= 1
    assert frames.std() > 1e-3


@pytest.fixture(scope="module")
def i2v_pair(i2v_dir):
    return _quiet(DiffusersI2V.from_pretrained(i2v_dir)), _quiet(
        SanaImageToVideoPipeline.from_pretrained(i2v_dir)
    )


def _image(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, 32, 32, generator=gen)


@pytest.mark.parametrize("guidance", [6.0, 1.0])
def test_i2v_matches_diffusers(i2v_pair, guidance):
    reference, ours = i2v_pair
    assert ours.scheduler.config.shift == 8.0
    kwargs = dict(image=_image(), prompt="a red circle moving right", guidance_scale=guidance)
    expected, got = _run(reference, **kwargs), _run(ours, **kwargs)
    assert (got - expected).abs().max().item() <= 1e-4


def test_i2v_takes_a_numpy_image(i2v_pair):
    """An [H, W, 3] array in [0, 1] (which diffusers refuses) gives what diffusers gives for the tensor."""
    reference, ours = i2v_pair
    kwargs = dict(prompt="a red circle moving right", guidance_scale=6.0)
    expected = _run(reference, image=_image(1), **kwargs)
    got = _run(ours, image=_image(1)[0].permute(1, 2, 0).numpy(), **kwargs)
    assert (got - expected).abs().max().item() <= 1e-4


def test_i2v_from_a_t2v_folder_uses_flowmatch_shift_8(t2v_dir):
    pipe = SanaImageToVideoPipeline.from_pretrained(t2v_dir)
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert pipe.scheduler.config.shift == 8.0
    reference = _quiet(DiffusersI2V.from_pretrained(t2v_dir, scheduler=i2v_scheduler()))
    kwargs = dict(image=_image(1), prompt="a blue star")
    assert (_run(_quiet(pipe), **kwargs) - _run(reference, **kwargs)).abs().max().item() <= 1e-4
