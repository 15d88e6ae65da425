"""The training objective, written against the same velocity contract as the samplers:
velocity(x, t) with t = 1000·σ per sample or per latent frame.

Flow matching on the straight path x_σ = (1 − σ)·x0 + σ·ε, whose velocity is v = ε − x0: the model is
trained to predict it, and the samplers integrate it from σ = 1 to 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_sigmas(
    batch: int,
    generator: torch.Generator,
    *,
    shift: float = 3.0,
    mean: float = 0.0,
    std: float = 1.0,
    device=None,
) -> torch.Tensor:
    """Logit-normal σ (sigmoid of N(mean, std)), then shifted towards noise: σ' = s·σ / (1 + (s − 1)·σ)."""
    sigma = torch.sigmoid(mean + std * torch.randn(batch, generator=generator))
    return (shift * sigma / (1 + (shift - 1) * sigma)).to(device)


def flow_matching_loss(velocity, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the predicted velocity at x_σ for a batch of clips x0 [B, C, F, H, W]."""
    s = sigma.view(-1, 1, 1, 1, 1)
    x = (1 - s) * x0 + s * noise
    return F.mse_loss(velocity(x, sigma * 1000).float(), (noise - x0).float())


def chunked_flow_matching_loss(
    model, x0: torch.Tensor, chunks: list[int], sigmas: torch.Tensor, noise: torch.Tensor
):
    """Block-causal training through the state-passing model (SPEC §4): chunk c is noised to σ_c, with σ
    non-decreasing over chunks, and sees the earlier (less noisy) chunks only through the state.

    model(x, t, state, frame_offset) -> (v, next state). sigmas: [B, len(chunks)], sorted per sample.
    """
    state, start, total = None, 0, x0.new_zeros(())
    for c, size in enumerate(chunks):
        part, eps, s = x0[:, :, start : start + size], noise[:, :, start : start + size], sigmas[:, c]
        x = (1 - s.view(-1, 1, 1, 1, 1)) * part + s.view(-1, 1, 1, 1, 1) * eps
        v, state = model(x, s * 1000, state, start)
        total = total + F.mse_loss(v.float(), (eps - part).float(), reduction="sum")
        start += size
    return total / x0.numel()
