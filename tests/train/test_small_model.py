"""`sana-video train small` at micro size: it writes a pipeline folder that ours and diffusers load alike."""

from __future__ import annotations

import json

import torch
from diffusers import SanaVideoPipeline as DiffusersT2V

from sana_video import SanaVideoPipeline
from sana_video.cli import main
from sana_video.train.data import COLOURS


def test_train_small_writes_a_loadable_pipeline(tmp_path):
    out = tmp_path / "small"
    args = ["train", "small", "--out", str(out), "--frames", "9", "--size", "32", "--vae-steps", "2", "--steps", "2",
            "--batch-size", "2", "--vae-batch-size", "2", "--cache-clips", "3", "--workers", "0", "--device", "cpu",
            "--quiet"]  # fmt: skip
    assert main(args) == 0
    weights = (out / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes()
    losses = json.loads((out / "losses.json").read_text())
    assert len(losses["vae"]) == 2 and len(losses["transformer"]) == 2
    # Run again: the finished VAE and checkpoints are reused, and the result is the same.
    assert main(args) == 0
    assert (out / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes() == weights
    assert json.loads((out / "losses.json").read_text()) == losses
    assert json.loads((out / "sana_video.json").read_text())["frames"] == 9
    stats = json.loads((out / "vae" / "config.json").read_text())
    assert stats["latents_std"] != [1.0] * 8  # measured, not the defaults
    colours = json.loads((out / "vae_colours.json").read_text())  # how well the VAE keeps each colour
    assert set(colours) == set(COLOURS) and all(0 <= e < 2 for e in colours.values())
    kwargs = dict(prompt="a red circle moving right", num_inference_steps=2, height=32, width=32, frames=9,
                  output_type="pt", use_resolution_binning=False)  # fmt: skip
    ours = SanaVideoPipeline.from_pretrained(out)(**kwargs, generator=torch.Generator().manual_seed(0)).frames
    theirs = DiffusersT2V.from_pretrained(out)(**kwargs, generator=torch.Generator().manual_seed(0)).frames
    assert (ours - theirs).abs().max() <= 1e-4


def test_command_line_defaults_are_the_recipe():
    from sana_video.cli import build_parser
    from sana_video.train.small_model import SmallModelRecipe

    args, recipe = build_parser().parse_args(["train", "small", "--out", "x"]), SmallModelRecipe()
    assert (args.frames, args.size, args.seed, args.cache_clips) == (recipe.frames, recipe.size, recipe.seed,
                                                                     recipe.cache_clips)  # fmt: skip
    assert (args.vae_steps, args.vae_batch_size) == (recipe.vae.steps, recipe.vae.batch_size)
    assert (args.steps, args.batch_size, args.lr) == (recipe.transformer.steps, recipe.transformer.batch_size,
                                                      recipe.transformer.lr)  # fmt: skip
