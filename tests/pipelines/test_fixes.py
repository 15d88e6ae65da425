"""Where we deliberately differ from the reference: its bugs, fixed (SPEC §3, REFERENCE_NOTES §7)."""

from __future__ import annotations

import pytest
import torch
from diffusers import SanaImageToVideoPipeline as DiffusersI2V
from diffusers import SanaVideoPipeline as DiffusersT2V

from sana_video import SanaImageToVideoPipeline, SanaVideoPipeline
from sana_video.pipelines.sizes import ASPECT_RATIO_BINS, binned_size
from tests.pipelines.components import save_diffusers_pipeline
from tests.pipelines.test_parity import BASE, _image, _quiet


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.fixture(scope="module")
def t2v(t2v_dir):
    return _quiet(SanaVideoPipeline.from_pretrained(t2v_dir))


@pytest.fixture(scope="module")
def i2v(i2v_dir):
    return _quiet(SanaImageToVideoPipeline.from_pretrained(i2v_dir))


def test_i2v_several_videos_per_prompt(i2v, i2v_dir):
    """The reference crashes (mask built for the prompt batch, not the video batch); ours gives each
    video exactly what a single-video run with its generator gives."""
    kwargs = dict(BASE, image=_image(), prompt="a red circle")
    both = i2v(**kwargs, num_videos_per_prompt=2, generator=_gens(3, 4)).frames
    for i, seed in enumerate((3, 4)):
        single = i2v(**kwargs, generator=_gens(seed)).frames
        assert (both[i] - single[0]).abs().max() <= 1e-5
    assert (both[0] - both[1]).abs().max() > 1e-2
    reference = _quiet(DiffusersI2V.from_pretrained(i2v_dir))
    with pytest.raises(RuntimeError):
        reference(**kwargs, num_videos_per_prompt=2, generator=_gens(3, 4))


def test_prompt_batch_with_several_videos_keeps_text_and_mask_together(t2v):
    """Video p·n + i belongs to prompt p, embeddings and mask alike (the reference tiles the masks
    in another order than the embeddings)."""
    prompts = ["a cat", "a dog on a plain white background moves slowly left"]  # different lengths
    batch = t2v(**BASE, prompt=prompts, num_videos_per_prompt=2, generator=_gens(0, 1, 2, 3)).frames
    for index, (prompt, seed) in enumerate(
        [(prompts[0], 0), (prompts[0], 1), (prompts[1], 2), (prompts[1], 3)]
    ):
        single = t2v(**BASE, prompt=prompt, generator=_gens(seed)).frames
        assert (batch[index] - single[0]).abs().max() <= 1e-5, index


@pytest.mark.parametrize("frames, hint", [(80, "try 77 or 81"), (10, "try 9 or 13"), (0, "try 1 or 5")])
def test_frame_counts_must_be_4k_plus_1(t2v, frames, hint):
    with pytest.raises(ValueError, match=rf"frames must be 4k\+1 \(got {frames}\); {hint}"):
        t2v(**{**BASE, "frames": frames}, prompt="a cat")


def test_size_must_suit_the_model(t2v):
    with pytest.raises(
        ValueError, match=r"height must be a positive multiple of 16 \(got 100\); try 96 or 112"
    ):
        t2v(**{**BASE, "height": 100}, prompt="a cat")


def test_every_bin_is_valid_for_the_model():
    for sample_size, bins in ASPECT_RATIO_BINS.items():
        for ratio, size in bins.items():
            assert binned_size(int(1000 * ratio), 1000, sample_size, 16) == size  # each ratio picks its bin
            for multiple in (16, 32, 64):  # and every bin is rounded to what the model needs
                h, w = binned_size(int(1000 * ratio), 1000, sample_size, multiple)
                assert h % multiple == 0 and w % multiple == 0
                assert abs(h - size[0]) <= multiple // 2 and abs(w - size[1]) <= multiple // 2


def test_binning_to_a_bin_the_reference_rejects(tmp_path):
    """480×480 maps to the 624×624 bin: a multiple of 16 (what patch 2 × VAE 8 needs), not of 32."""
    folder = save_diffusers_pipeline(tmp_path / "p", "t2v", sample_size=30, rope_max_seq_len=64)
    kwargs = dict(BASE, prompt="a cat", frames=1, height=480, width=480, use_resolution_binning=True)
    seen = []
    ours = _quiet(SanaVideoPipeline.from_pretrained(folder))
    ours.transformer.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    frames = ours(**kwargs, generator=_gens(0)).frames
    assert frames.shape == (1, 1, 3, 480, 480) and seen[0] == (624 // 8, 624 // 8)
    with pytest.raises(ValueError, match="divisible by 32"):
        _quiet(DiffusersT2V.from_pretrained(folder))(**kwargs, generator=_gens(0))


def test_callback_and_interrupt_match_the_reference(t2v, t2v_dir):
    def callback(pipe, i, t, tensors):
        if i == 1:
            pipe._interrupt = True
        return {"latents": tensors["latents"] * 0.5}

    reference = _quiet(DiffusersT2V.from_pretrained(t2v_dir))
    outputs = [
        pipe(**BASE, prompt="a red star", callback_on_step_end=callback, generator=_gens(0)).frames
        for pipe in (reference, t2v)
    ]
    assert (outputs[0] - outputs[1]).abs().max() <= 1e-4
    uninterrupted = t2v(**BASE, prompt="a red star", generator=_gens(0)).frames
    assert (uninterrupted - outputs[1]).abs().max() > 1e-3


def test_arguments_and_defaults_are_the_references():
    import inspect

    for ours, theirs in ((SanaVideoPipeline, DiffusersT2V), (SanaImageToVideoPipeline, DiffusersI2V)):
        mine = inspect.signature(ours.__call__).parameters
        reference = inspect.signature(theirs.__call__).parameters
        assert list(mine) == list(reference)
        for name, param in reference.items():
            default = mine[name].default
            if isinstance(param.default, list):
                default = list(default)
            assert default == param.default, name
