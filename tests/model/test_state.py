"""Block-causal state passing: chunk-by-chunk calls against a single-pass block-causal reference."""

from __future__ import annotations

import pytest
import torch

from sana_video import SanaVideoState, SanaVideoTransformer3DModel
from tests import reference
from tests.conftest import make_inputs, randomize, rel_err, tiny_config

CFG = tiny_config(attention_head_dim=16, cross_attention_head_dim=16, cross_attention_dim=32, mlp_ratio=3.0)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize(SanaVideoTransformer3DModel(**CFG), seed=3)


def _token_slice(timestep: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Per-token timesteps [B, 1, F, H', W'] -> the frames [start, stop) of a chunk."""
    return timestep[:, :, start:stop] if timestep.ndim == 5 else timestep


def run_chunks(model, inputs, chunks, *, t_for_state=None):
    """Call the model chunk by chunk, threading the state. Returns the concatenated outputs.

    If `t_for_state` is given, each chunk's output comes from a pass that reads the state, and the
    state for the next chunk comes from a separate pass of the same chunk at that timestep (the
    long-video recipe: denoise at t > 0, then a clean pass at t = 0 to extend the context).
    """
    x, outputs, state, start = inputs["hidden_states"], [], None, 0
    for size in chunks:
        stop = start + size
        common = dict(
            hidden_states=x[:, :, start:stop],
            encoder_hidden_states=inputs["encoder_hidden_states"],
            encoder_attention_mask=inputs.get("encoder_attention_mask"),
            state=state,
            frame_offset=start,
        )
        out = model(**common, timestep=_token_slice(inputs["timestep"], start, stop), return_state=True)
        outputs.append(out.sample)
        state = out.state
        if t_for_state is not None:
            state = model(**common, timestep=t_for_state, return_state=True).state
        assert state.num_frames == stop
        start = stop
    return torch.cat(outputs, dim=2)


def _reference(model, inputs, chunks):
    return reference.forward(
        model.state_dict(),
        CFG,
        inputs["hidden_states"],
        inputs["encoder_hidden_states"],
        inputs["timestep"],
        inputs.get("encoder_attention_mask"),
        chunks=chunks,
    )


@pytest.mark.parametrize(
    "frames, chunks",
    [
        (3, [3]),  # one chunk: plain bidirectional attention
        (3, [2, 1]),
        (3, [1, 1, 1]),
        (6, [1, 3, 2]),  # uneven
        (5, [3, 1, 1]),  # first chunk larger (the long-video split: 21 -> [11, 10])
    ],
)
@pytest.mark.parametrize("per_token", [False, True])
def test_chunked_equals_single_pass_block_causal(model, frames, chunks, per_token):
    inputs = make_inputs(CFG, batch=2, frames=frames, height=6, width=8, per_token=per_token, seed=frames)
    with torch.no_grad():
        got = run_chunks(model, inputs, chunks)
    expected = _reference(model, inputs, chunks)
    assert rel_err(got, expected) <= 1e-5


def test_block_causal_differs_from_bidirectional(model):
    """The reference's chunk mask matters, so the test above can fail."""
    inputs = make_inputs(CFG, batch=1, frames=3, height=6, width=8)
    with torch.no_grad():
        chunked = run_chunks(model, inputs, [1, 1, 1])
        whole = run_chunks(model, inputs, [3])
    assert rel_err(chunked, whole) > 1e-2
    assert rel_err(chunked[:, :, -1], whole[:, :, -1]) > 1e-3  # the last chunk sees all, but not its future


@pytest.mark.parametrize("chunks", [[2, 1], [1, 1, 1], [1, 2]])
def test_chunks_at_t_read_a_state_made_at_t0(model, chunks):
    """Chunk c is denoised at t > 0 reading the context of chunks < c, each made by a pass at t = 0.

    Single-pass equivalent: per-token timesteps, t = 0 on the earlier chunks' tokens and the chunk's own
    t on its tokens; block-causal attention means earlier chunks never see the later, noisy ones.
    """
    inputs = make_inputs(CFG, batch=2, frames=3, height=4, width=6, seed=7)
    with torch.no_grad():
        got = run_chunks(model, inputs, chunks, t_for_state=0)
    # For chunk c, the reference runs the clip up to c with the earlier chunks at t = 0.
    start = 0
    for c, size in enumerate(chunks):
        stop = start + size
        sub = {**inputs, "hidden_states": inputs["hidden_states"][:, :, :stop]}
        tokens_per_frame = (4 // 2) * (6 // 2)
        t = torch.zeros(2, stop * tokens_per_frame)
        t[:, start * tokens_per_frame :] = inputs["timestep"][:, None].float()
        sub["timestep"] = t
        expected = _reference(model, sub, chunks[: c + 1])[:, :, start:stop]
        assert rel_err(got[:, :, start:stop], expected) <= 1e-5, f"chunk {c}"
        start = stop


def test_state_size_is_constant(model):
    inputs = make_inputs(CFG, batch=1, frames=20, height=4, width=4, seed=2)
    sizes = {}
    state = None
    with torch.no_grad():
        for f in range(20):
            state = model(
                inputs["hidden_states"][:, :, f : f + 1],
                inputs["encoder_hidden_states"],
                inputs["timestep"],
                encoder_attention_mask=inputs["encoder_attention_mask"],
                state=state,
                frame_offset=f,
                return_state=True,
            ).state
            sizes[f + 1] = state.nbytes
    assert sizes[2] == sizes[20] > 0
    heads, d, dim, positions = CFG["num_attention_heads"], 16, 2 * 16, 2 * 2
    per_layer = (heads * d * d + heads * d) * 4 + positions * dim * 4  # fp32 sums + fp32 last frame
    assert sizes[20] == CFG["num_layers"] * per_layer


def test_save_load_continue_is_identical(model, tmp_path):
    inputs = make_inputs(CFG, batch=2, frames=4, height=4, width=6, seed=5)
    x = inputs["hidden_states"]
    common = dict(encoder_hidden_states=inputs["encoder_hidden_states"], timestep=inputs["timestep"])
    with torch.no_grad():
        state = model(x[:, :, :2], **common, return_state=True).state
        state.save(tmp_path / "state.safetensors")
        loaded = SanaVideoState.load(tmp_path / "state.safetensors")
        a = model(x[:, :, 2:], **common, state=state, frame_offset=2, return_state=True)
        b = model(x[:, :, 2:], **common, state=loaded, frame_offset=2, return_state=True)
    assert loaded.num_frames == 2 and loaded.nbytes == state.nbytes
    assert torch.equal(a.sample, b.sample)
    for name, tensor in a.state.tensors().items():
        assert torch.equal(tensor, b.state.tensors()[name]), name
    assert not list(tmp_path.glob(".*tmp")), "the atomic save left a temporary file behind"


def test_reading_a_state_does_not_modify_it(model):
    inputs = make_inputs(CFG, batch=1, frames=2, height=4, width=4)
    x, text, t = inputs["hidden_states"], inputs["encoder_hidden_states"], inputs["timestep"]
    with torch.no_grad():
        state = model(x[:, :, :1], text, t, return_state=True).state
        before = {k: v.clone() for k, v in state.tensors().items()}
        model(x[:, :, 1:], text, t, state=state, frame_offset=1, return_state=True)
    assert all(torch.equal(before[k], v) for k, v in state.tensors().items())


def test_state_to_keeps_sums_fp32(model):
    inputs = make_inputs(CFG, batch=1, frames=1, height=4, width=4)
    with torch.no_grad():
        state = model(**inputs, return_state=True).state
    half = state.to("cpu", torch.bfloat16)
    assert half.layers[0].attention.kv.dtype == torch.float32
    assert half.layers[0].attention.k_sum.dtype == torch.float32
    assert half.layers[0].last_frame.dtype == torch.bfloat16
    assert half.num_frames == state.num_frames


def test_return_dict_false_returns_state(model):
    inputs = make_inputs(CFG, batch=1, frames=2, height=4, width=4)
    with torch.no_grad():
        sample, state = model(**inputs, return_state=True, return_dict=False)
        (only,) = model(**inputs, return_dict=False)
    assert isinstance(state, SanaVideoState) and torch.equal(sample, only)
