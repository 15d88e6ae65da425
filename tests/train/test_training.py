"""Training code on micro models on the CPU: closed forms, the loss falls, resuming is exact, LoRA."""

from __future__ import annotations

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
from sana_video.train.objectives import TransformerObjective, VAEObjective

SMALL = dict(frames=9, height=32, width=32)


def micro_pipeline(seed: int = 0) -> SanaVideoPipeline:
    words = vocabulary()
    torch.manual_seed(seed)
    vae = make_vae(latent_channels=8, base_dim=8).eval().requires_grad_(False)
    transformer = make_transformer(8, 32, seed=seed, num_layers=2, rope_max_seq_len=64, sample_size=2)
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
