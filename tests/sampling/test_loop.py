"""The sampling loop, guidance and scheduler helpers, against closed forms."""

from __future__ import annotations

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from sana_video.sampling import classifier_free_guidance, flow_shift, sample, set_timesteps, with_shift

SCHEDULERS = {
    "flowmatch": lambda: FlowMatchEulerDiscreteScheduler(shift=8.0),
    "dpm": lambda: DPMSolverMultistepScheduler(
        flow_shift=8.0, use_flow_sigmas=True, prediction_type="flow_prediction"
    ),
    "unipc": lambda: UniPCMultistepScheduler(
        flow_shift=8.0, use_flow_sigmas=True, prediction_type="flow_prediction"
    ),
}


@pytest.mark.parametrize("name", SCHEDULERS)
def test_exact_velocity_lands_on_the_data(name):
    """With the true velocity of a straight path, x_t = (1−σ)·x0 + σ·ε and v = ε − x0, every flow
    solver ends at x0 (starting on the path at its first σ: DPM's is 0.99987, not 1)."""
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 3, 2, 2, generator=gen), torch.randn(2, 4, 3, 2, 2, generator=gen)
    scheduler = SCHEDULERS[name]()
    timesteps = set_timesteps(scheduler, 12, torch.device("cpu"))
    start = float(scheduler.sigmas[0])
    out = sample(lambda x, t: noise - x0, scheduler, (1 - start) * x0 + start * noise, timesteps)
    assert (out - x0).abs().max() < 1e-4


def test_clean_frames_stay_exactly_and_see_t_zero():
    scheduler = FlowMatchEulerDiscreteScheduler(shift=8.0)
    timesteps = set_timesteps(scheduler, 5, torch.device("cpu"))
    latents = torch.randn(2, 4, 3, 2, 2)
    clean = torch.tensor([[True, False, False], [True, True, False]])
    seen = []

    def velocity(x, t):
        seen.append(t.clone())
        return torch.ones_like(x)

    out = sample(velocity, scheduler, latents.clone(), timesteps, clean_frames=clean)
    assert torch.equal(out[0, :, 0], latents[0, :, 0]) and torch.equal(out[1, :, :2], latents[1, :, :2])
    assert not torch.equal(out[0, :, 1], latents[0, :, 1])
    for t, step in zip(seen, timesteps):
        assert t.shape == (2, 3)
        assert torch.equal(t[clean], torch.zeros(3)) and torch.all(t[~clean] == step)


def test_guidance_closed_form():
    def batched(x, t):  # uncond half returns 1, cond half returns 3
        half = x.shape[0] // 2
        return torch.cat([torch.full_like(x[:half], 1.0), torch.full_like(x[half:], 3.0)])

    v = classifier_free_guidance(batched, 6.0)(torch.zeros(2, 1), torch.zeros(2))
    assert torch.equal(v, torch.full((2, 1), 1.0 + 6.0 * (3.0 - 1.0)))


def test_on_step_and_stop():
    scheduler = FlowMatchEulerDiscreteScheduler()
    timesteps = set_timesteps(scheduler, 6, torch.device("cpu"))
    calls = []
    sample(
        lambda x, t: torch.zeros_like(x),
        scheduler,
        torch.zeros(1, 1, 1, 1, 1),
        timesteps,
        on_step=lambda i, t, x: calls.append(i) or x,
        stop=lambda: len(calls) >= 2,
    )
    assert calls == [0, 1]


def test_shift_under_either_config_name():
    for name, make in SCHEDULERS.items():
        shifted = with_shift(make(), 3.0)
        assert flow_shift(shifted) == 3.0, name
        assert type(shifted) is type(make())
    with pytest.raises(ValueError, match="not a flow-matching scheduler"):
        with_shift(DPMSolverMultistepScheduler(), 3.0)


def test_custom_sigmas_and_bad_steps():
    scheduler = FlowMatchEulerDiscreteScheduler()
    assert len(set_timesteps(scheduler, None, torch.device("cpu"), sigmas=[1.0, 0.5, 0.25])) == 3
    with pytest.raises(ValueError, match=r"num_inference_steps must be at least 1 \(got 0\)"):
        set_timesteps(scheduler, 0, torch.device("cpu"))
