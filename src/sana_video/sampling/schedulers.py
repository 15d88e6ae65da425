"""Setting up diffusers schedulers: timesteps, and the flow shift under either of its config names."""

from __future__ import annotations

import inspect

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

# Image-to-video samples with FlowMatch Euler at shift 8 (the reference's documented recipe silently
# ends up at shift 1; see REFERENCE_NOTES §7.10).
I2V_SHIFT = 8.0


def set_timesteps(
    scheduler,
    num_inference_steps: int | None,
    device: torch.device,
    timesteps: list[int] | None = None,
    sigmas: list[float] | None = None,
) -> torch.Tensor:
    """Set the scheduler's grid (a step count, or custom timesteps or sigmas) and return its timesteps."""
    if timesteps is not None and sigmas is not None:
        raise ValueError("pass either timesteps or sigmas, not both")
    custom = (
        {"timesteps": timesteps}
        if timesteps is not None
        else {"sigmas": sigmas}
        if sigmas is not None
        else {}
    )
    for name in custom:
        if name not in inspect.signature(scheduler.set_timesteps).parameters:
            raise ValueError(f"{type(scheduler).__name__} does not accept custom {name}")
    if custom:
        scheduler.set_timesteps(device=device, **custom)
    else:
        if num_inference_steps is None or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1 (got {num_inference_steps})")
        scheduler.set_timesteps(num_inference_steps, device=device)
    return scheduler.timesteps


def step_kwargs(scheduler, generator, eta: float) -> dict:
    """The optional arguments this scheduler's `step` takes (generator for stochastic solvers, eta for DDIM)."""
    accepted = inspect.signature(scheduler.step).parameters
    return {k: v for k, v in (("generator", generator), ("eta", eta)) if k in accepted}


def flow_shift(scheduler) -> float | None:
    """The scheduler's flow shift, whichever config key holds it."""
    config = scheduler.config
    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        return float(config.shift)
    if config.get("use_flow_sigmas"):
        return float(config.flow_shift)
    return None


def with_shift(scheduler, shift: float):
    """A copy of `scheduler` with its flow shift set (FlowMatch: `shift`; DPM/UniPC flow sigmas: `flow_shift`)."""
    if shift <= 0:
        raise ValueError(f"shift must be positive (got {shift})")
    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        return type(scheduler).from_config(scheduler.config, shift=shift)
    if scheduler.config.get("use_flow_sigmas"):
        return type(scheduler).from_config(scheduler.config, flow_shift=shift)
    raise ValueError(f"{type(scheduler).__name__} is not a flow-matching scheduler; it has no shift to set")


def image_to_video_scheduler(scheduler):
    """The scheduler image-to-video uses: FlowMatch Euler as given, otherwise FlowMatch Euler at shift 8."""
    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        return scheduler
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=scheduler.config.get("num_train_timesteps", 1000), shift=I2V_SHIFT
    )
