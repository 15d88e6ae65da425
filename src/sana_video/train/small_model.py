"""Build the project's small SANA-Video from nothing: VAE, then transformer, on the shapes videos.

sana-video train small --out models/shapes       # what made the bundled model (see docs/TRAINING.md)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from sana_video.pipelines.text import COMPLEX_HUMAN_INSTRUCTION
from sana_video.train.components import (
    make_text_encoder,
    make_tokenizer,
    make_transformer,
    make_vae,
    vocabulary,
)
from sana_video.train.data import ShapesDataset
from sana_video.train.evaluate import reconstruction_colour_errors
from sana_video.train.latent_cache import LatentClips, cached_clips, encode_clips
from sana_video.train.loop import TrainConfig, apply_ema, train
from sana_video.train.objectives import TransformerObjective, VAEObjective, latent_statistics

logger = logging.getLogger(__name__)
# Largest RGB distance between a colour and the VAE's reconstruction of it that still reads as that colour
# (the meaning checks find an object by its colour within 0.25).
MAX_COLOUR_ERROR = 0.2


@dataclass
class SmallModelRecipe:
    frames: int = 33
    # Clips the VAE trains on. Measured: trained on 9 frames its causal cache does not carry past them
    # (PSNR 19.7 dB on frames 0-8, 8-15 dB after); trained on 17 it holds to 33 frames.
    vae_frames: int = 17
    vae_crop: int | None = 48  # the VAE trains on random crops this size (it is fully convolutional)
    size: int = 96
    vae_spatial: int = 4  # spatial compression
    # The transformer's spatial patch: 8×8 pixels a token (12×12 tokens a frame). With 4×4 patches (6×6
    # tokens) a 2 M-parameter model trained 4000 steps drew blotches that did not follow their prompt.
    patch: int = 2
    # 16 latent channels (as Wan2.1) and no per-pixel-noise backgrounds for the VAE: builds 3-4's VAE (8
    # channels, all backgrounds, 1500 steps) lost green (docs/TRAINING.md). scripts/vae_sweep.py measures
    # the alternatives side by side and keeps one that holds every colour.
    latent_channels: int = 16
    vae_backgrounds: tuple[str, ...] = ("plain", "striped", "checkered")
    # Pixels weighted by 1 + 12·(distance from the frame's median colour) in the VAE's loss (VAEObjective):
    # without it every VAE of builds 3-5 lost green and cyan — 16 or 8 channels, with or without noisy
    # backgrounds; weighted by chroma, white was lost (docs/TRAINING.md).
    vae_object_weight: float = 12.0
    vae_base_dim: int = 32
    text_hidden: int = 64
    vae: TrainConfig = None  # type: ignore[assignment]
    transformer: TrainConfig = None  # type: ignore[assignment]
    # Training σ shift (and the sampler's). Build 5 (16-channel object-weighted VAE) at 3 ignored the
    # direction word: its latents tell a noisy input's motion at σ ≈ 0.9, so the text was barely learned
    # where only the text can say it (docs/TRAINING.md); a larger shift trains more at those σ.
    shift: float = 6.0
    # Without the complex human instruction before the caption: with it, the caption is ~25 of 300 text
    # tokens and a small model learns to read it far more slowly (measured, docs/TRAINING.md).
    complex_human_instruction: bool = False
    chunk_frames: int = 3  # latent frames per chunk in chunk-causal batches
    chunked_fraction: float = 0.2  # a chunk-causal step costs ~2× a plain one (H200, docs/TRAINING.md)
    image_fraction: float = 0.2  # batches whose latent frame 0 is given (image-to-video, image starts)
    # The transformer's clips: no per-pixel-noise backgrounds (texture it would spend itself on) and larger
    # objects. On a CPU micro model this made the text matter more (docs/TRAINING.md). The VAE sees all.
    backgrounds: tuple[str, ...] = ("plain", "striped", "checkered")
    object_sizes: tuple[float, float] = (0.12, 0.18)
    # One object a clip for the transformer: every word of the caption then describes the whole clip
    # (colour, shape, direction), the quickest binding for a model trained in minutes. The VAE sees 1-3.
    max_objects: int = 1
    # Captions without the speed (probability 0.3) or the background (0.3, independently): build 4, trained
    # on full captions only, moved "a red circle moving right" to the left.
    short_captions: float = 0.3
    gradient_checkpointing: bool = False  # a 4 M-parameter model on 1296 tokens a clip fits without it
    # Clips rendered and encoded once, then drawn from (0: render and encode every batch). On an H200
    # rendering and encoding every batch held the transformer to ~3.5 steps/s.
    cache_clips: int = 20_000
    seed: int = 0

    def __post_init__(self):
        # Measured on an H200 (docs/TRAINING.md): this VAE reaches 25.6 dB in 1400 steps (7.6 minutes beside
        # two other sweep variants); the transformer's step is launch-bound (5.4 plain steps/s at batch 64,
        # 6.1 at 32), so a large batch.
        self.vae = self.vae or TrainConfig(steps=1400, batch_size=8, lr=3e-4, warmup=100, ema_decay=None,
                                           checkpoint_every=100)  # fmt: skip
        self.transformer = self.transformer or TrainConfig(steps=3600, batch_size=128, lr=1e-3, warmup=200,
                                                           checkpoint_every=100)  # fmt: skip


def build_small_model(output: str | os.PathLike, recipe: SmallModelRecipe, device: str = "cuda") -> Path:
    """Train and save the small model as a diffusers-format pipeline folder at `output`.

    Work goes to `output/.work/` (checkpoints: an interrupted build resumes where it stopped)."""
    from diffusers import DPMSolverMultistepScheduler

    from sana_video import SanaVideoPipeline

    output = Path(output)
    work = output / ".work"
    data = ShapesDataset(frames=recipe.frames, height=recipe.size, width=recipe.size, seed=recipe.seed,
                         backgrounds=recipe.backgrounds, sizes=recipe.object_sizes,
                         max_objects=recipe.max_objects, short_captions=recipe.short_captions)  # fmt: skip
    words = vocabulary()

    # 1. The VAE, then the latent statistics the pipelines normalize with (kept in work/vae_model once done).
    vae, vae_history = build_vae(work / "vae_model", recipe, device)
    if vae.config.z_dim != recipe.latent_channels:  # a VAE chosen by scripts/vae_sweep.py; record the truth
        logger.info("the VAE in %s has %d latent channels", work / "vae_model", vae.config.z_dim)
        recipe = replace(recipe, latent_channels=vae.config.z_dim)

    # 2. The transformer, with text encoded as the pipelines encode it.
    transformer = make_transformer(vae.config.z_dim, recipe.text_hidden, seed=recipe.seed,
                                   sample_size=recipe.size // (recipe.vae_spatial * recipe.patch),
                                   patch_size=(1, recipe.patch, recipe.patch)).to(device)  # fmt: skip
    scheduler = DPMSolverMultistepScheduler(
        flow_shift=recipe.shift, use_flow_sigmas=True, prediction_type="flow_prediction"
    )
    pipe = SanaVideoPipeline(make_tokenizer(words), make_text_encoder(len(words), recipe.text_hidden, recipe.seed).to(device),
                             vae, transformer, scheduler)  # fmt: skip
    objective = TransformerObjective(pipe, shift=recipe.shift, chunk_frames=recipe.chunk_frames,
                                     chunked_fraction=recipe.chunked_fraction,
                                     image_fraction=recipe.image_fraction,
                                     complex_human_instruction=COMPLEX_HUMAN_INSTRUCTION
                                     if recipe.complex_human_instruction else None,
                                     encoded=bool(recipe.cache_clips))  # fmt: skip
    if recipe.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    dataset, config, collate = data, recipe.transformer, None
    if recipe.cache_clips:  # train on the clips' latents, encoded once
        key = {"count": recipe.cache_clips, "data": repr(data.__dict__), "vae": vae_history[-10:]}

        def encode():
            settings = recipe.transformer
            return encode_clips(vae, data, recipe.cache_clips, batch_size=64, num_workers=settings.num_workers,
                                normalize=objective.normalize, progress=settings.progress)  # fmt: skip

        dataset = cached_clips(work / "latents.pt", key, encode, device=device)
        collate = LatentClips.collate
        config = replace(config, num_workers=0)  # the latents are on the device already
    result = train(transformer, objective, dataset, config, work / "transformer", collate_fn=collate)
    if result.ema is not None:
        apply_ema(transformer, result.ema)
    transformer.disable_gradient_checkpointing()

    pipe.to("cpu")
    pipe.save_pretrained(output)
    (output / "sana_video.json").write_text(json.dumps(defaults(recipe), indent=2) + "\n")
    (output / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2, default=str) + "\n")
    history = {"vae": vae_history, "transformer": result.history}
    (output / "losses.json").write_text(json.dumps(history) + "\n")  # every step's loss, for the curves
    shutil.copy(work / "vae_model" / "colours.json", output / "vae_colours.json")
    if (work / "vae_choice.json").exists():  # the VAE came from scripts/vae_sweep.py: its variants' results
        shutil.copy(work / "vae_choice.json", output / "vae_choice.json")
    return output


def build_vae(output: str | os.PathLike, recipe: SmallModelRecipe, device: str = "cuda"):
    """Train the VAE (work in `output/../vae`), measure its latent statistics, save it to `output`.
    Returns (vae, loss history); a finished `output` is loaded instead of trained again."""
    from diffusers import AutoencoderKLWan

    output = Path(output)
    if (output / "losses.json").exists():
        vae = AutoencoderKLWan.from_pretrained(output).to(device).eval().requires_grad_(False)
        if not (output / "colours.json").exists():  # finished before builds recorded it
            _record_colours(vae, output, recipe, device)
        return vae, json.loads((output / "losses.json").read_text())
    torch.manual_seed(recipe.seed)
    vae = make_vae(recipe.latent_channels, recipe.vae_base_dim, spatial=recipe.vae_spatial).to(device)
    crop = recipe.vae_crop if recipe.vae_crop and recipe.vae_crop < recipe.size else None
    data = ShapesDataset(frames=recipe.vae_frames, height=recipe.size, width=recipe.size, seed=recipe.seed + 1,
                         crop=crop, backgrounds=recipe.vae_backgrounds)  # fmt: skip
    history = train(
        vae,
        VAEObjective(vae, object_weight=recipe.vae_object_weight),
        data,
        recipe.vae,
        output.parent / "vae",
    ).history
    vae.eval().requires_grad_(False)
    clips = ShapesDataset(frames=recipe.frames, height=recipe.size, width=recipe.size, seed=recipe.seed)
    mean, std = latent_statistics(vae, clips, count=256)
    vae.register_to_config(latents_mean=mean, latents_std=std)
    vae.save_pretrained(output)
    _record_colours(vae, output, recipe, device)
    (output / "losses.json").write_text(json.dumps(history) + "\n")  # last: marks it finished
    return vae, history


@torch.no_grad()
def _record_colours(vae, output: Path, recipe: SmallModelRecipe, device: str) -> None:
    """Write how far the VAE moves each colour to output/colours.json; warn where one is lost.

    Build 4's VAE lost green (0.55 from its colour, a green object decoded as background) and nothing
    said so until the transformer had been trained on it."""
    colours = reconstruction_colour_errors(
        lambda clip: vae.decode(vae.encode(clip[None].to(device)).latent_dist.mode()).sample[0],
        size=recipe.size, frames=recipe.vae_frames)  # fmt: skip
    (output / "colours.json").write_text(json.dumps(colours, indent=2) + "\n")
    worst = max(colours, key=colours.get)
    if colours[worst] > MAX_COLOUR_ERROR:
        logger.warning("the VAE loses %s: its reconstruction is %.2f away in RGB (more than %.2f); a model "
                       "trained on it will not draw that colour", worst, colours[worst], MAX_COLOUR_ERROR)  # fmt: skip


def defaults(recipe: SmallModelRecipe) -> dict:
    """Generation defaults that suit this model, read by the command line (its trained size and length)."""
    return {
        "height": recipe.size,
        "width": recipe.size,
        "frames": recipe.frames,
        "negative_prompt": "",
        "motion_score": 30,
        "steps": 20,  # build 3 scored the same at 20 as at 30 (docs/TRAINING.md), in 10.3 s a video
        # build 5 on the bundled-model tests' first grid: 72 % of videos as prompted at 4, 89 % at 7, 83 % at 10
        "guidance": 7.0,
        "chunk_frames": recipe.chunk_frames,
        "shift": recipe.shift,
        "complex_human_instruction": recipe.complex_human_instruction,
        "sampler": "euler",  # long videos: the model is not distilled for the few-step sampler
    }
