"""The denoising loop shared by every pipeline.

It knows a velocity function, a diffusers scheduler and, optionally, which latent frames are clean
(given, never denoised). Prompts, images, devices and files are the pipelines' business.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# velocity(x, t) -> v. x: [B, C, F, H, W] fp32 latents. t: [B] one timestep per sample, or [B, F] one
# per latent frame (when some frames are clean, their t is 0). v: fp32, shaped like x.
Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# on_step(i, t, latents) -> latents (a callback may replace them).
OnStep = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


def sample(
    velocity: Velocity,
    scheduler,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    *,
    clean_frames: torch.Tensor | None = None,
    step_kwargs: dict | None = None,
    on_step: OnStep | None = None,
    stop: Callable[[], bool] | None = None,
    progress=None,
) -> torch.Tensor:
    """Integrate from noise to data over `timesteps` (already set on `scheduler`).

    Args:
        clean_frames: [B, F] bool, latent frames that are given (e.g. the image of image-to-video):
            the model sees t = 0 there and the scheduler's update is discarded for them.
        step_kwargs: extra arguments of `scheduler.step` (generator, eta) where it takes them.
        on_step: called after each step; returns the latents to continue from.
        stop: checked before each step; True skips the remaining steps.
        progress: anything with `update()` (a tqdm bar).
    """
    batch = latents.shape[0]
    keep = None if clean_frames is None else clean_frames[:, None, :, None, None]  # [B, 1, F, 1, 1]
    for i, t in enumerate(timesteps):
        if stop is not None and stop():
            break
        # Per-frame timesteps: t where the frame is noisy, 0 where it is clean (a float, as the reference).
        t_model = (
            t.expand(batch)
            if clean_frames is None
            else t.expand(clean_frames.shape) * (1 - clean_frames.float())
        )
        v = velocity(latents, t_model)
        stepped = scheduler.step(v, t, latents, **(step_kwargs or {}), return_dict=False)[0]
        # Schedulers act elementwise, so discarding the clean frames' update equals stepping only the rest.
        latents = stepped if keep is None else torch.where(keep, latents, stepped)
        if on_step is not None:
            latents = on_step(i, t, latents)
        if progress is not None:
            progress.update()
    return latents
