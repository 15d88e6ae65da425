"""The training objective, written against the same velocity contract as the samplers:
velocity(x, t) with t = 1000·σ per sample or per latent frame.

Flow matching on the straight path x_σ = (1 − σ)·x0 + σ·ε, whose velocity is v = ε − x0: the model is
trained to predict it, and the samplers integrate it from σ = 1 to 0.
"""

from __future__ import annotations

import torch


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


def _per_frame(sigma: torch.Tensor) -> torch.Tensor:
    """σ [B] or [B, F] as a view that broadcasts over [B, C, F, H, W]."""
    return sigma.view(-1, 1, 1, 1, 1) if sigma.dim() == 1 else sigma[:, None, :, None, None]


def _squared_error(v: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Sum of squared errors over the frames that count (`weight` [B, F], 1 or 0; None: all)."""
    error = (v.float() - target.float()).pow(2)
    return error.sum() if weight is None else (error * _per_frame(weight.float())).sum()


def _counted(x0: torch.Tensor, weight: torch.Tensor | None) -> float | torch.Tensor:
    per_frame = x0.shape[1] * x0.shape[3] * x0.shape[4]
    return x0.numel() if weight is None else weight.float().sum().clamp_min(1) * per_frame


def flow_matching_loss(velocity, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor,
                       weight: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Mean squared error of the predicted velocity at x_σ for a batch of clips x0 [B, C, F, H, W].

    sigma: [B], or [B, F] per latent frame (a given, clean frame has σ = 0 and the model sees t = 0 there,
    as in image-to-video). weight: [B, F], the frames the mean is over (default all)."""
    s = _per_frame(sigma)
    x = (1 - s) * x0 + s * noise
    return _squared_error(velocity(x, sigma * 1000), noise - x0, weight) / _counted(x0, weight)


def chunked_flow_matching_loss(model, x0: torch.Tensor, chunks: list[int], sigmas: torch.Tensor,
                               noise: torch.Tensor, weight: torch.Tensor | None = None):  # fmt: skip
    """Block-causal training through the state-passing model (SPEC §4): chunk c is noised to its σ, with σ
    non-decreasing over chunks, and sees the earlier chunks only through the state. A chunk at σ = 0 is
    a clean context chunk, exactly what the long-video sampler's t = 0 pass sees.

    model(x, t, state, frame_offset) -> (v, next state). sigmas: [B, len(chunks)] per chunk, or [B, F] per
    latent frame; weight: [B, F] as in `flow_matching_loss`.
    """
    if sigmas.shape[1] != x0.shape[2]:  # per chunk -> per frame
        sigmas = sigmas.repeat_interleave(torch.tensor(chunks, device=sigmas.device), dim=1)
    state, start, total = None, 0, x0.new_zeros(())
    for size in chunks:
        part, eps = x0[:, :, start : start + size], noise[:, :, start : start + size]
        s = sigmas[:, start : start + size]
        x = (1 - _per_frame(s)) * part + _per_frame(s) * eps
        t = s[:, 0] if bool((s == s[:, :1]).all()) else s  # one timestep per sample where the chunk allows
        v, state = model(x, t * 1000, state, start)
        total = total + _squared_error(
            v, eps - part, None if weight is None else weight[:, start : start + size]
        )
        start += size
    return total / _counted(x0, weight)
