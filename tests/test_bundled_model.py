"""The bundled small model means what it is told, on the CPU: prompted colour and motion over a grid with
held-out colour-shape pairs, image starts, and long videos across chunk boundaries with a prompt switch.

SANA_VIDEO_SHAPES_MODEL=DIR checks another build of it with the same tests (before bundling it)."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sana_video import LongSanaVideoPipeline, SanaImageToVideoPipeline, SanaVideoPipeline
from sana_video.cli import _cpu_has_native_bf16
from sana_video.pipelines.text import COMPLEX_HUMAN_INSTRUCTION, motion_prompt
from sana_video.train.data import DIRECTIONS, HELD_OUT, ClipSpec, ObjectSpec, render
from sana_video.train.evaluate import (
    centroids,
    colour_error,
    displacement,
    meaning_grid,
    meaning_scores,
    moves,
    prompt_for,
    psnr,
    reconstruction_colour_errors,
)
from sana_video.train.small_model import MAX_COLOUR_ERROR
from sana_video.weights import bundled_model

MODEL = os.environ.get("SANA_VIDEO_SHAPES_MODEL") or bundled_model()


@pytest.fixture(scope="module")
def settings() -> dict:
    assert MODEL is not None, "no bundled model in sana_video/weights/shapes (docs/TRAINING.md builds it)"
    defaults = json.loads((Path(MODEL) / "sana_video.json").read_text())
    return dict(
        height=defaults["height"],
        width=defaults["width"],
        negative_prompt=defaults["negative_prompt"],
        num_inference_steps=defaults["steps"],
        guidance_scale=defaults["guidance"],
        complex_human_instruction=COMPLEX_HUMAN_INSTRUCTION if defaults["complex_human_instruction"] else None,
        output_type="np",
        use_resolution_binning=False,
    ) | {"frames": defaults["frames"], "motion": defaults["motion_score"], "chunk": defaults["chunk_frames"],
         "sampler": defaults.get("sampler", "few-step")}  # fmt: skip


def _load(cls):
    """The pipeline as `sana-video` runs it here: its VAE in bf16 on a CPU with native bf16 (4-5× faster
    decoding), else fp32 (`--vae-dtype auto`)."""
    pipe = cls.from_pretrained(MODEL)
    if _cpu_has_native_bf16():
        pipe.optimize(compile=False, vae_dtype=torch.bfloat16, channels_last=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _split(settings):
    extra = {k: settings[k] for k in ("frames", "motion", "chunk", "sampler")}
    return {k: v for k, v in settings.items() if k not in extra}, extra


def test_the_object_has_the_prompted_colour_and_motion(settings):
    """≥ 85 % of videos move the prompted colour the prompted way, held-out colour-shape pairs included;
    the same check against the opposite direction passes (almost) never. 18 of the whole grid's 72 cases
    (every pair in two unlike directions, seed 2: the seed of the whole-grid measurement in
    docs/TRAINING.md, 94 %, which a CPU suite cannot afford; of these 18 it misses one, a white star
    "down"). At ~7 s a video this test is a third of the suite's time, hence 18 rather than more."""
    common, extra = _split(settings)
    pipe = _load(SanaVideoPipeline)

    def generate(prompt, seed):
        return pipe(prompt=motion_prompt(prompt, extra["motion"]), frames=extra["frames"],
                    generator=torch.Generator().manual_seed(seed), **common).frames[0]  # fmt: skip

    rows = meaning_scores(generate, meaning_grid(2), seeds=[2], speed="slowly")
    failed = [(r["colour"], r["shape"], r["direction"], r["seed"]) for r in rows if not r["moves"]]
    assert np.mean([r["moves"] for r in rows]) >= 0.85, f"not as prompted: {failed}"
    assert np.mean([r["moves_opposite"] for r in rows]) <= 0.1
    held = [r for r in rows if (r["colour"], r["shape"]) in HELD_OUT]
    assert np.mean([r["moves"] for r in held]) >= 0.75, "held-out colour-shape pairs are not composed"


def test_the_vae_keeps_every_colour():
    """Builds 3-4's VAE decoded a green object as background, so their transformer never drew green."""
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(Path(MODEL) / "vae").eval()
    errors = reconstruction_colour_errors(
        lambda clip: vae.decode(vae.encode(clip[None]).latent_dist.mode()).sample[0]
    )
    assert max(errors.values()) <= MAX_COLOUR_ERROR, errors


@pytest.mark.parametrize(("prompt", "colour", "direction"),
                         [("a red circle moving right", "red", "right"), ("a green square moving down", "green", "down"),
                          ("a purple star moving left", "purple", "left"), ("a cyan diamond moving up", "cyan", "up")])  # fmt: skip
def test_prompts_as_people_write_them(settings, prompt, colour, direction):
    """Without speed or background (the README's demo prompt is the first)."""
    common, extra = _split(settings)
    pipe = _load(SanaVideoPipeline)
    video = pipe(prompt=motion_prompt(prompt, extra["motion"]), frames=extra["frames"],
                 generator=torch.Generator().manual_seed(0), **common).frames[0]  # fmt: skip
    assert moves(video, colour, direction), f"{prompt!r}: moved {displacement(video, colour)}"
    assert colour_error(video, colour) <= 0.2


@pytest.mark.parametrize(("colour", "shape", "direction", "start"),
                         [("red", "circle", "right", (0.3, 0.5)), ("blue", "square", "down", (0.5, 0.3))])  # fmt: skip
def test_an_image_start_is_frame_zero_and_then_moves(settings, colour, shape, direction, start):
    common, extra = _split(settings)
    pipe = _load(SanaImageToVideoPipeline)
    spec = ClipSpec((ObjectSpec(colour, shape, direction, "slowly", start, 0.14),), "plain", 0.3)
    image = (
        (render(spec, 1, common["height"], common["width"])[:, 0].permute(1, 2, 0).numpy() + 1) / 2
    ).clip(0, 1)
    video = pipe(image=image, prompt=motion_prompt(prompt_for(colour, shape, direction, "slowly"), extra["motion"]),
                 frames=extra["frames"], generator=torch.Generator().manual_seed(0), **common).frames[0]  # fmt: skip
    assert psnr(video[0], image) >= 25
    assert moves(video, colour, direction)


def _chunk_bounds(chunk: int, chunks: int) -> list[int]:
    """Pixel frame ranges of latent chunks: the first chunk's first latent frame is one pixel frame."""
    return [0] + [1 + 4 * (chunk * k - 1) for k in range(1, chunks + 1)]


def _along(step: np.ndarray, direction: str) -> float:
    want = np.asarray(DIRECTIONS[direction], dtype=np.float64)
    return float(step @ want / np.hypot(*want))


@pytest.mark.parametrize("switch", [False, True], ids=["steady", "switch"])
def test_long_videos_keep_moving_across_chunks(settings, switch):
    """4 chunks: the object keeps moving the prompted way in every chunk, its colour within 0.2 (RGB
    distance) of the named one in each; with the prompt switched at the middle boundary, the last two chunks
    move the new way."""
    common, extra = _split(settings)
    common.pop("use_resolution_binning")  # the long pipeline takes the size as given
    pipe = _load(LongSanaVideoPipeline)
    chunk, chunks = extra["chunk"], 4
    ways = ["right", "right", "down", "down"] if switch else ["right"] * 4
    prompts = [motion_prompt(prompt_for("red", "circle", w, "slowly"), extra["motion"]) for w in ways]
    bounds = _chunk_bounds(chunk, chunks)
    video = pipe(prompt=prompts, frames=bounds[-1], chunk_frames=chunk, sampler=extra["sampler"],
                 generator=torch.Generator().manual_seed(0), **common).frames[0]  # fmt: skip
    track = centroids(video, "red")
    for (a, b), way in zip(itertools.pairwise(bounds), ways):
        part = track[a:b]
        assert not np.isnan(part).all(), f"no red object in frames {a}-{b}"
        step = np.nanmean(part[-2:], 0) - np.nanmean(part[:2], 0)
        assert _along(step, way) > 0.02, f"frames {a}-{b}: moved {step}, not {way}"
        assert colour_error(video[a:b], "red") <= 0.2
