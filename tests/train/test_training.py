"""Training code on micro models on the CPU: closed forms, the loss falls, resuming is exact, LoRA."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from sana_video import SanaVideoPipeline
from sana_video.train.components import (
    make_text_encoder,
    make_tokenizer,
    make_transformer,
    make_vae,
    vocabulary,
)
from sana_video.train.data import ShapesDataset
from sana_video.train.flow import chunked_flow_matching_loss, flow_matching_loss, sample_sigmas
from sana_video.train.loop import TrainConfig, train
from sana_video.train.objectives import TransformerObjective, VAEObjective, reconstruction_loss

SMALL = dict(frames=9, height=32, width=32)


def micro_pipeline(seed: int = 0) -> SanaVideoPipeline:
    words = vocabulary()
    torch.manual_seed(seed)
    vae = make_vae(latent_channels=8, base_dim=8).eval().requires_grad_(False)
    transformer = make_transformer(
        8, 32, seed=seed, num_layers=2, rope_max_seq_len=64, patch_size=(1, 2, 2), sample_size=4
    )
    return SanaVideoPipeline(make_tokenizer(words), make_text_encoder(len(words), hidden=32), vae, transformer,
                             FlowMatchEulerDiscreteScheduler(shift=8.0))  # fmt: skip


def test_exact_velocity_has_zero_loss():
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 3, 2, 2, generator=gen), torch.randn(2, 4, 3, 2, 2, generator=gen)
    sigma = sample_sigmas(2, gen)
    assert flow_matching_loss(lambda x, t: noise - x0, x0, sigma, noise) == 0
    sigmas = torch.rand(2, 2, generator=gen).sort(dim=1).values
    assert chunked_flow_matching_loss(lambda x, t, s, o: (noise[:, :, o : o + x.shape[2]] - x0[:, :, o : o + x.shape[2]], None),
                                      x0, [2, 1], sigmas, noise) == 0  # fmt: skip


def test_given_frames_carry_no_loss():
    """Per-frame σ with frame 0 given (σ = 0): a model wrong only there still has zero loss, and the model
    sees t = 0 on that frame; any error elsewhere counts, averaged over the counted frames only."""
    gen = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(2, 4, 3, 2, 2, generator=gen), torch.randn(2, 4, 3, 2, 2, generator=gen)
    sigma = torch.tensor([[0.0, 0.5, 0.7], [0.0, 0.9, 0.9]])
    weight = (sigma > 0).float()
    seen = []

    def velocity(x, t):
        seen.append(t)
        v = noise - x0
        v[:, :, 0] += 5.0  # wrong on the given frame
        return v

    assert flow_matching_loss(velocity, x0, sigma, noise, weight) == 0
    assert torch.equal(seen[0][:, 0], torch.zeros(2))
    off = lambda x, t: noise - x0 + 1.0  # noqa: E731
    assert torch.allclose(flow_matching_loss(off, x0, sigma, noise, weight), torch.tensor(1.0))

    def chunk_model(x, t, state, offset):  # exact except on the given frames
        v = (noise - x0)[:, :, offset : offset + x.shape[2]].clone()
        if offset == 0:
            v[:, :, 0] -= 3.0
        return v, None

    assert chunked_flow_matching_loss(chunk_model, x0, [2, 1], sigma, noise, weight) == 0


def test_clean_context_chunks_and_image_frames_in_the_objective():
    """The objective's chunk-causal batches: σ non-decreasing over chunks, leading chunks sometimes clean
    (σ = 0, the sampler's context pass), frame 0 given in image batches — seen through the timesteps."""
    pipe = micro_pipeline()
    data = ShapesDataset(length=4, seed=3, **SMALL)  # 3 latent frames: chunks of 1
    batch = tuple(zip(*[data[i] for i in range(2)]))
    videos, captions = torch.stack(batch[0]), list(batch[1])
    calls, forward = [], pipe.transformer.forward

    def spy(*args, **kwargs):
        calls.append(kwargs["timestep"].clone())
        return forward(*args, **kwargs)

    pipe.transformer.forward = spy
    objective = _objective(pipe, chunked_fraction=1.0, image_fraction=1.0)
    clean_chunks = set()
    for seed in range(12):
        calls.clear()
        loss = objective((videos, captions), torch.Generator().manual_seed(seed))
        assert torch.isfinite(loss)
        firsts = [t.reshape(2, -1)[:, -1] for t in calls]  # one σ per chunk (last token)
        assert len(calls) == 3 and all((b >= a).all() for a, b in itertools.pairwise(firsts))
        assert calls[0].reshape(2, -1)[:, 0].eq(0).all()  # frame 0 given
        clean_chunks.add(sum(int(t.eq(0).all()) for t in calls))
    assert clean_chunks >= {1, 2}  # some batches have clean context beyond the image

    calls.clear()  # bidirectional image batches: one timestep per token, 0 on frame 0's tokens only
    loss = _objective(pipe, chunked_fraction=0.0, image_fraction=1.0)((videos, captions), torch.Generator())
    (t,) = calls
    assert torch.isfinite(loss) and t.shape == (
        2,
        1,
        3,
        4,
        4,
    )  # [B, 1, F, H, W] latent (8×8) over 2×2 patches
    assert t[:, :, 0].eq(0).all() and t[:, :, 1:].gt(0).all()


def test_shift_moves_sigmas_towards_noise():
    plain = sample_sigmas(4096, torch.Generator().manual_seed(0), shift=1.0)
    shifted = sample_sigmas(4096, torch.Generator().manual_seed(0), shift=3.0)
    assert plain.min() > 0 and plain.max() < 1 and abs(plain.mean() - 0.5) < 0.02
    assert (shifted >= plain).all() and shifted.mean() > 0.65


def _objective(pipe, **kwargs):
    return TransformerObjective(pipe, max_sequence_length=32, chunk_frames=1, **kwargs)


def test_training_reduces_the_loss(tmp_path):
    pipe = micro_pipeline()
    data = ShapesDataset(length=4, seed=3, **SMALL)  # four clips, seen again and again
    config = TrainConfig(steps=40, batch_size=4, lr=2e-3, warmup=5, progress=False, checkpoint_every=100)
    history = train(
        pipe.transformer, _objective(pipe, text_dropout=0.0, chunked_fraction=0.0), data, config, tmp_path
    ).history
    assert np.mean(history[-8:]) < 0.75 * np.mean(history[:8])


def test_vae_reconstruction_improves(tmp_path):
    vae = make_vae(latent_channels=8, base_dim=8)
    data = ShapesDataset(length=2, seed=1, **SMALL)
    config = TrainConfig(steps=25, batch_size=2, lr=2e-3, warmup=3, progress=False, checkpoint_every=100)
    history = train(vae, VAEObjective(vae), data, config, tmp_path).history
    assert np.mean(history[-5:]) < 0.6 * np.mean(history[:5])


def test_object_weighted_reconstruction_loss_closed_form():
    # Five pixels: three of a grey background (0.5), one green (0.1, 0.8, 0.2), one white (0.97 each); the
    # frame's median colour is the grey. Green is reconstructed 0.4 too dark in its green channel, the first
    # grey pixel 0.2 too bright in every channel, the rest exactly. In [-1, 1] units errors are doubled.
    colours = torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.1, 0.8, 0.2], [0.97] * 3])
    errors = torch.zeros(5, 3)
    errors[0], errors[3, 1] = 0.4, -0.8
    target = (colours.T * 2 - 1)[None, :, None, None, :]  # [1, 3, 1, 1, 5]
    reconstruction = target + errors.T[None, :, None, None, :]
    per_value = lambda e: abs(e) + e * e  # noqa: E731
    grey, green = 3 * per_value(0.4), per_value(0.8)  # summed over channels
    assert reconstruction_loss(reconstruction, target).item() == pytest.approx((grey + green) / 15)
    green_weight = 1 + 12 * (0.4**2 + 0.3**2 + 0.3**2) ** 0.5
    white_weight = 1 + 12 * (3 * 0.47**2) ** 0.5
    expected = (grey + green_weight * green) / (3 * (3 + green_weight + white_weight))
    assert reconstruction_loss(reconstruction, target, object_weight=12).item() == pytest.approx(expected)


class Interrupt(Exception):
    pass


def test_resuming_continues_with_identical_losses(tmp_path):
    data = ShapesDataset(length=16, seed=2, **SMALL)
    config = TrainConfig(steps=6, batch_size=2, lr=1e-3, warmup=2, progress=False, checkpoint_every=3)

    straight_pipe = micro_pipeline()
    straight = train(
        straight_pipe.transformer,
        _objective(straight_pipe, chunked_fraction=0.5),
        data,
        config,
        tmp_path / "a",
    ).history

    pipe = micro_pipeline()
    objective = _objective(pipe, chunked_fraction=0.5)
    calls = []

    def crashing(batch, generator):
        calls.append(1)
        if len(calls) == 5:  # during step 5: the checkpoint of step 3 is the last one
            raise Interrupt
        return objective(batch, generator)

    with pytest.raises(Interrupt):
        train(pipe.transformer, crashing, data, config, tmp_path / "b")
    fresh = micro_pipeline()  # a new process would start from the initial weights
    resumed = train(
        fresh.transformer, _objective(fresh, chunked_fraction=0.5), data, config, tmp_path / "b"
    ).history
    assert resumed == straight  # bit for bit, the steps before and after the interruption


def test_lora_finetune_changes_outputs_and_saves_and_loads(tmp_path):
    from sana_video.train.lora import VideoFolder, finetune_lora
    from sana_video.video import export_to_video

    folder = tmp_path / "videos"
    folder.mkdir()
    shapes = ShapesDataset(length=2, seed=5, **SMALL)
    for i in range(2):
        video, caption = shapes[i]
        export_to_video((video.permute(1, 2, 3, 0) + 1) / 2, folder / f"clip{i}.mp4")
        (folder / f"clip{i}.txt").write_text(caption)
    data = VideoFolder(folder, **SMALL)

    def run(pipe):
        pipe.set_progress_bar_config(disable=True)
        return pipe("a red circle", num_inference_steps=2, **SMALL, max_sequence_length=32, output_type="latent",
                    use_resolution_binning=False, generator=torch.Generator().manual_seed(0)).frames  # fmt: skip

    pipe = micro_pipeline()
    before = run(pipe)
    config = TrainConfig(
        steps=4, batch_size=2, lr=5e-3, warmup=1, progress=False, ema_decay=None, checkpoint_every=100
    )
    finetune_lora(pipe, data, config, tmp_path / "lora", rank=4)
    after = run(pipe)
    assert (after - before).abs().max() > 1e-3
    fresh = micro_pipeline()
    fresh.load_lora_weights(tmp_path / "lora")
    assert torch.allclose(run(fresh), after, atol=1e-5)


def test_video_folder_errors(tmp_path):
    from sana_video.train.lora import VideoFolder

    with pytest.raises(ValueError, match="no videos"):
        VideoFolder(tmp_path, **SMALL)
    (tmp_path / "a.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match=r"a\.mp4 has no caption: put it in a\.txt"):
        VideoFolder(tmp_path, **SMALL)


def test_stopping_early_then_going_on_matches_a_straight_run(tmp_path):
    """`stop_after` ends a run part-way through its schedule; resuming without it finishes the schedule."""
    from dataclasses import replace

    data = ShapesDataset(length=16, seed=2, **SMALL)
    config = TrainConfig(steps=6, batch_size=2, lr=1e-3, warmup=2, progress=False, checkpoint_every=100)
    pipe = micro_pipeline()
    straight = train(pipe.transformer, _objective(pipe), data, config, tmp_path / "a").history

    first = micro_pipeline()
    part = train(first.transformer, _objective(first), data, replace(config, stop_after=4), tmp_path / "b")
    assert part.history == straight[:4]
    again = micro_pipeline()  # at the stop: nothing more to do, the checkpoint's weights and EMA come back
    same = train(again.transformer, _objective(again), data, replace(config, stop_after=4), tmp_path / "b")
    assert same.history == straight[:4] and all(torch.equal(part.ema[k], same.ema[k]) for k in part.ema)
    rest = micro_pipeline()
    assert train(rest.transformer, _objective(rest), data, config, tmp_path / "b").history == straight


def test_training_on_encoded_clips_is_training_on_the_clips(tmp_path):
    """The small model's latent cache is only a shortcut: the same batch, given as cached latents, gives
    the same loss as given as videos (encoded and normalized by the objective)."""
    from sana_video.train.latent_cache import LatentClips, cached_clips, encode_clips

    pipe = micro_pipeline()
    pipe.vae.register_to_config(latents_mean=[0.1] * 8, latents_std=[0.5] * 8)
    data = ShapesDataset(length=8, seed=3, **SMALL)
    on_the_fly = TransformerObjective(
        pipe, chunked_fraction=0.5, image_fraction=0.5, complex_human_instruction=None
    )
    cached = TransformerObjective(pipe, chunked_fraction=0.5, image_fraction=0.5, complex_human_instruction=None,
                                  encoded=True)  # fmt: skip
    clips = encode_clips(pipe.vae, data, 6, batch_size=4, normalize=on_the_fly.normalize, dtype=torch.float32,
                         progress=False)  # fmt: skip
    assert len(clips) == 6 and clips.captions == [data[i][1] for i in range(6)]
    for indices in ([0, 1, 2], [5, 3, 4]):
        videos = torch.stack([data[i][0] for i in indices])
        batch = LatentClips.collate(clips.__getitems__(indices))
        for seed in range(3):  # plain, chunked and image batches
            a = on_the_fly((videos, [data[i][1] for i in indices]), torch.Generator().manual_seed(seed))
            b = cached(batch, torch.Generator().manual_seed(seed))
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # Saved with its key, loaded while the key matches, encoded again when it does not.
    built = []

    def build():
        built.append(1)
        return clips

    first = cached_clips(tmp_path / "clips.pt", {"n": 6}, build)
    again = cached_clips(tmp_path / "clips.pt", {"n": 6}, build)
    assert len(built) == 1 and torch.equal(again.latents, first.latents) and again.captions == first.captions
    cached_clips(tmp_path / "clips.pt", {"n": 7}, build)
    assert len(built) == 2
