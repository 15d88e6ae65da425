"""torch.compile traces the blocks as whole graphs (fullgraph: any graph break is an error)."""

from __future__ import annotations

import torch

from sana_video import SanaVideoTransformer3DModel
from sana_video.ops import dispatch
from tests.conftest import make_inputs, randomize, tiny_config


def test_compiled_blocks_match_eager_with_and_without_state():
    torch._dynamo.reset()
    dispatch._logged.clear()  # the first call of the op happens inside the compiled region
    cfg = tiny_config()
    model = randomize(SanaVideoTransformer3DModel(**cfg))
    inputs = make_inputs(cfg, batch=1, frames=3, height=8, width=8)
    first = {**inputs, "hidden_states": inputs["hidden_states"][:, :, :2]}
    later = {**inputs, "hidden_states": inputs["hidden_states"][:, :, 2:]}
    with torch.no_grad():
        compiled = SanaVideoTransformer3DModel(**cfg).eval()
        compiled.load_state_dict(model.state_dict())
        compiled.compile_repeated_blocks(fullgraph=True, backend="eager")  # tracing only: fast on a CPU
        state = compiled(**first, return_state=True).state
        got = compiled(**later, state=state, frame_offset=2).sample
        expected_state = model(**first, return_state=True).state
        expected = model(**later, state=expected_state, frame_offset=2).sample
    assert torch.allclose(got, expected, atol=1e-6)


def test_fp8_blocks_compile_without_graph_breaks():
    from sana_video.model.fp8 import quantize_fp8

    torch._dynamo.reset()
    dispatch._logged.clear()
    cfg = tiny_config()
    model = randomize(SanaVideoTransformer3DModel(**cfg)).eval()
    quantize_fp8(model)
    inputs = make_inputs(cfg, batch=1, frames=2, height=8, width=8)
    with torch.no_grad():
        expected = model(**inputs).sample
        model.compile_repeated_blocks(fullgraph=True, backend="eager")
        got = model(**inputs).sample
    assert torch.allclose(got, expected, atol=1e-6)
