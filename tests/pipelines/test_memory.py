"""Memory options keep the output: VAE slicing exactly, tiling approximately (tile seams blend)."""

from __future__ import annotations

import torch

from sana_video import SanaVideoPipeline
from tests.pipelines.test_parity import _quiet, _run


def test_vae_slicing_and_tiling(t2v_dir):
    pipe = _quiet(SanaVideoPipeline.from_pretrained(t2v_dir))
    kwargs = dict(prompt=["a red circle", "a blue square"])
    plain = _run(pipe, **kwargs)
    pipe.vae.enable_slicing()
    assert (_run(pipe, **kwargs) - plain).abs().max() <= 1e-5
    pipe.vae.enable_tiling(
        tile_sample_min_height=16,
        tile_sample_min_width=16,
        tile_sample_stride_height=8,
        tile_sample_stride_width=8,
    )
    tiled = _run(pipe, **kwargs)
    assert tiled.shape == plain.shape and (tiled - plain).abs().mean() < 0.05


def test_text_encoder_is_fed_where_it_lives(t2v_dir):
    """Inputs go to the encoder's own device and the embeddings come back to the execution device."""
    pipe = _quiet(SanaVideoPipeline.from_pretrained(t2v_dir))
    seen = []
    pipe.text_encoder.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(args[0].device), with_kwargs=True
    )
    embeds, *_ = pipe.encode_prompt("a cat", max_sequence_length=16, device=torch.device("cpu"))
    assert seen == [pipe.text_encoder.device, pipe.text_encoder.device] and embeds.device.type == "cpu"
