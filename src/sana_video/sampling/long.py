"""Block-autoregressive long video: chunks of latent frames, each denoised with the context of all
earlier chunks, carried as the transformer's running state (SPEC §4).

    for each chunk:  noise -> sample() with the model reading the state -> one pass on the clean chunk
                     at t = 0 that extends the state for the next chunk

The chunk loop threads the state object and nothing else; the per-chunk denoising is the same
`sample()` every pipeline uses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from sana_video import _transfer
from sana_video.sampling.loop import sample
from sana_video.sampling.schedulers import step_kwargs

# The distilled long-video checkpoint's schedule (LongSANA): four steps, sigma = t / 1000.
FEW_STEP_TIMESTEPS = (1000.0, 960.0, 889.0, 727.0)


def split_chunks(latent_frames: int, chunk: int) -> list[int]:
    """Latent frames per chunk: `chunk` each, the first taking the remainder (21, 10 -> [11, 10])."""
    if chunk < 1:
        raise ValueError(f"chunk size must be at least 1 latent frame (got {chunk})")
    if latent_frames <= chunk:
        return [latent_frames]
    count = latent_frames // chunk
    return [chunk + latent_frames % chunk] + [chunk] * (count - 1)


class ReNoiseScheduler:
    """The few-step sampler of the distilled checkpoint, behind a scheduler's `step`.

    At each listed timestep t (σ = t/1000) the model's velocity gives the clean estimate
    x0 = x − σ·v; before the next timestep it is noised again with fresh noise, x = (1−σ')·x0 + σ'·ε;
    after the last it is returned as is.
    """

    order = 1

    def __init__(self, timesteps: tuple[float, ...] = FEW_STEP_TIMESTEPS):
        if not timesteps or any(not 0 < t <= 1000 for t in timesteps):
            raise ValueError(f"timesteps must be in (0, 1000] (got {list(timesteps)})")
        self.schedule = tuple(float(t) for t in timesteps)
        self.set_timesteps()

    def set_timesteps(self, num_inference_steps: int | None = None, device: torch.device | str | None = None):
        self.timesteps = torch.tensor(self.schedule, device=device)
        # σ of each step as float(timestep) / 1000 gives it, read here from a CPU copy: reading the
        # device tensor would wait for the GPU at every step.
        self._sigmas = [t / 1000.0 for t in torch.tensor(self.schedule).tolist()]
        self._index = 0

    def step(self, model_output, timestep, sample, generator=None, return_dict=False):
        """`timestep` is the current one of `timesteps` (steps are taken in order)."""
        sigma = self._sigmas[self._index]
        x0 = sample.float() - sigma * model_output.float()
        self._index += 1
        if self._index >= len(self.schedule):
            return (x0,)
        next_sigma = self.schedule[self._index] / 1000.0
        noise = _transfer.randn(x0.shape, generator, x0.device)
        return ((1.0 - next_sigma) * x0 + next_sigma * noise,)


class ChunkModel(Protocol):
    """What the chunk loop needs from a model: velocity reading a context, and the context's extension."""

    def velocity(
        self, x: torch.Tensor, t: torch.Tensor, state: Any, frame_offset: int, chunk: int
    ) -> torch.Tensor: ...

    def extend(self, x: torch.Tensor, state: Any, frame_offset: int, chunk: int) -> Any: ...


@dataclass
class Chunk:
    index: int
    frame_offset: int  # first latent frame
    latents: torch.Tensor  # the denoised chunk [B, C, f, H', W'] (fp32, normalized)
    state: Any  # the context for the next chunk (None after the last chunk)


def rollout(
    model: ChunkModel,
    make_scheduler: Callable[[], Any],
    sizes: list[int],
    noise: Callable[[int, int], torch.Tensor],
    *,
    generator=None,
    state: Any = None,
    start: int = 0,
    first_frame: torch.Tensor | None = None,
    progress: Callable[[int], Any] | None = None,
) -> Iterator[Chunk]:
    """Denoise chunks `start`… in order, yielding each as it is done.

    Args:
        make_scheduler: a fresh scheduler for one chunk, its timesteps set.
        noise(chunk, frames): the chunk's starting noise.
        state: the context of the chunks before `start` (None at the beginning).
        first_frame: clean latents [B, C, 1, H', W'] for the video's first frame (image start).
        progress(steps): a bar for the chunk's steps, used as a context manager, or None.
    """
    offset = sum(sizes[:start])
    for index in range(start, len(sizes)):
        latents, clean = noise(index, sizes[index]), None
        if index == 0 and first_frame is not None:
            latents[:, :, :1] = first_frame.to(latents.dtype)
            clean = torch.zeros(latents.shape[0], sizes[0], dtype=torch.bool, device=latents.device)
            clean[:, 0] = True
        scheduler = make_scheduler()

        def velocity(x, t, state=state, offset=offset, index=index):
            return model.velocity(x, t, state, offset, index)

        bar = progress(len(scheduler.timesteps)) if progress else None
        with bar if bar is not None else contextlib.nullcontext():
            latents = sample(
                velocity,
                scheduler,
                latents,
                scheduler.timesteps,
                clean_frames=clean,
                step_kwargs=step_kwargs(scheduler, generator, eta=0.0),
                progress=bar,
            )
        last = index == len(sizes) - 1
        state = None if last else model.extend(latents, state, offset, index)
        yield Chunk(index, offset, latents, state)
        offset += sizes[index]
