"""The Mix-FFN's temporal conv (one matmul of all taps, then shifted sums) against nn.functional.conv2d."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sana_video.model.mixffn import TemporalConv
from tests.conftest import rel_err


def _reference(conv: TemporalConv, y: torch.Tensor, left: torch.Tensor | None) -> torch.Tensor:
    """The checkpoint's own op: a (3, 1) conv over [B, D, frames, P] with zero padding 1 in time; a
    `left` frame is the previous chunk's last one, put before the first (its own output dropped)."""
    x = y if left is None else torch.cat((left[:, None], y), dim=1)
    out = F.conv2d(x.permute(0, 3, 1, 2), conv.weight, padding=(1, 0)).permute(0, 2, 3, 1)
    return out if left is None else out[:, 1:]


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("frames", [1, 4])
@pytest.mark.parametrize("with_left", [False, True])
def test_matches_conv2d(frames, with_left, compiled):
    gen = torch.Generator().manual_seed(frames)
    conv = TemporalConv(8)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) / 5)
    y = torch.randn(2, frames, 6, 8, generator=gen)
    left = torch.randn(2, 6, 8, generator=gen) if with_left else None
    run = torch.compile(conv, fullgraph=True, dynamic=False) if compiled else conv
    with torch.no_grad():
        assert rel_err(run(y, left), _reference(conv, y, left)) <= 1e-6


def test_gradients_match_conv2d():
    """Training runs the in-place sums under autograd: weights and inputs get the conv's gradients."""
    gen = torch.Generator().manual_seed(0)
    conv = TemporalConv(8)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) / 5)
    y0, left0 = torch.randn(2, 3, 6, 8, generator=gen), torch.randn(2, 6, 8, generator=gen)
    probe = torch.randn(2, 3, 6, 8, generator=gen)
    grads = []
    for forward in (conv, lambda y, left: _reference(conv, y, left)):
        y, left = y0.clone().requires_grad_(), left0.clone().requires_grad_()
        conv.weight.grad = None
        (forward(y, left) * probe).sum().backward()
        grads.append((y.grad, left.grad, conv.weight.grad.clone()))
    for got, expected in zip(*grads):
        assert rel_err(got, expected) <= 1e-6
