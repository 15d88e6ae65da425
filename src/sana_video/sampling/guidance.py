"""Guidance as a wrapper around a velocity function (the loop never branches on it)."""

from __future__ import annotations

import torch

from sana_video.sampling.loop import Velocity


def classifier_free_guidance(batched: Velocity, scale: float) -> Velocity:
    """v = v_uncond + scale·(v_cond − v_uncond).

    `batched` runs the model on a doubled batch: the first half unconditioned (negative prompt), the
    second conditioned, as the reference orders its CFG batch.
    """

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        uncond, cond = batched(torch.cat([x, x]), torch.cat([t, t])).chunk(2)
        return uncond + scale * (cond - uncond)

    return velocity
