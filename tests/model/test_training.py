"""Gradients: checkpointing recomputes the blocks and gives the same gradients, with and without state."""

from __future__ import annotations

import pytest
import torch

from sana_video import SanaVideoTransformer3DModel
from tests.conftest import make_inputs, randomize, tiny_config

CFG = tiny_config(mlp_ratio=3.0)


def _grads(model, inputs, state=None):
    model.zero_grad()
    out = model(**inputs, state=state, frame_offset=0 if state is None else state.num_frames)
    gen = torch.Generator().manual_seed(0)
    (out.sample * torch.randn(out.sample.shape, generator=gen)).sum().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("with_state", [False, True])
def test_checkpointing_gives_the_same_gradients(with_state):
    torch.manual_seed(0)
    model = randomize(SanaVideoTransformer3DModel(**CFG), seed=2).train()
    inputs = make_inputs(CFG, batch=2, frames=3, height=4, width=6, per_token=True)
    state = None
    if with_state:
        with torch.no_grad():
            context = make_inputs(CFG, batch=2, frames=2, height=4, width=6, seed=9)
            state = model(**context, return_state=True).state
    plain = _grads(model, inputs, state)

    calls = []
    # A pre-hook: non-reentrant checkpointing stops recomputing early, before forward hooks would run.
    hooks = [b.register_forward_pre_hook(lambda *_: calls.append(1)) for b in model.transformer_blocks]
    model.enable_gradient_checkpointing()
    checkpointed = _grads(model, inputs, state)
    for h in hooks:
        h.remove()

    assert len(calls) == 2 * CFG["num_layers"], "each block should run again in the backward pass"
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)
    assert all(g.abs().sum() > 0 for n, g in plain.items() if "scale_shift_table" in n)


def test_gradient_flows_into_a_state():
    """Training through chunks (backpropagation across a chunk boundary) reaches the earlier chunk."""
    model = randomize(SanaVideoTransformer3DModel(**CFG), seed=2)
    inputs = make_inputs(CFG, batch=1, frames=2, height=4, width=4)
    first = inputs["hidden_states"][:, :, :1].clone().requires_grad_()
    state = model(**{**inputs, "hidden_states": first}, return_state=True).state
    out = model(**{**inputs, "hidden_states": inputs["hidden_states"][:, :, 1:]}, state=state, frame_offset=1)
    out.sample.sum().backward()
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert state.detach().layers[0].last_frame.grad_fn is None
