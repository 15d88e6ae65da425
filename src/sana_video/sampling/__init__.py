"""Denoising: one loop, guidance wrappers, scheduler set-up."""

from sana_video.sampling.guidance import classifier_free_guidance
from sana_video.sampling.loop import Velocity, sample
from sana_video.sampling.schedulers import flow_shift, set_timesteps, with_shift

__all__ = ["Velocity", "classifier_free_guidance", "flow_shift", "sample", "set_timesteps", "with_shift"]
