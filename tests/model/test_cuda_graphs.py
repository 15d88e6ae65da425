"""The transformer replayed from CUDA graphs (`model.cuda_graphs`) against the model called directly.

On a CPU the wrapper's input preparation and its pass-through are checked; the replays themselves need
a GPU (these tests run there through the device tool: `pytest tests/model/test_cuda_graphs.py`)."""

from __future__ import annotations

import pytest
import torch

from sana_video import SanaImageToVideoPipeline, SanaVideoPipeline, SanaVideoTransformer3DModel
from sana_video.model.cuda_graphs import CUDAGraphTransformer
from tests.conftest import make_inputs, randomize, tiny_config

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
cuda_only = pytest.mark.skipif(
    DEVICE != "cuda", reason="CUDA graphs need a GPU (run through the device tool)"
)


def _model(device="cpu", **overrides) -> SanaVideoTransformer3DModel:
    return randomize(SanaVideoTransformer3DModel(**tiny_config(**overrides))).to(device)


def _to(inputs: dict, device) -> dict:
    return {k: v.to(device) for k, v in inputs.items()}


@pytest.mark.parametrize("per_token", [False, True])
@pytest.mark.parametrize("guidance_embeds", [False, True])
def test_graph_inputs_reproduce_the_model(per_token, guidance_embeds):
    """What a graph records (text cut to its kept span, the mask as an additive bias, timesteps one per
    sample or token) gives the model's output on the raw inputs."""
    model = _model(guidance_embeds=guidance_embeds)
    runner = CUDAGraphTransformer(model)
    inputs = make_inputs(model.config, batch=2, text_len=200, per_token=per_token, seed=3)
    inputs["encoder_attention_mask"][:, 100:] = 0  # padding in every sample: cut to 128 (TEXT_BUCKET)
    with torch.no_grad():
        expected = model(**inputs).sample
        prepared = runner.graph_inputs(
            inputs["hidden_states"],
            inputs["encoder_hidden_states"],
            inputs["timestep"],
            inputs["encoder_attention_mask"],
            inputs.get("guidance"),
        )
        got = runner.run(prepared)
    assert prepared["text"].shape[1] == 128 and prepared["mask"].shape == (2, 1, 128)
    assert torch.equal(got, expected)


def test_calls_it_cannot_replay_run_the_model():
    """On the CPU, with autograd, and for long-video chunks (a state, a frame offset) it is the model."""
    model = _model()
    runner = CUDAGraphTransformer(model)
    inputs = make_inputs(model.config, batch=1, frames=4)
    first = {**inputs, "hidden_states": inputs["hidden_states"][:, :, :2]}
    later = {**inputs, "hidden_states": inputs["hidden_states"][:, :, 2:]}
    with torch.no_grad():
        state = runner(**first, return_state=True).state
        expected_state = model(**first, return_state=True).state
        got = runner(**later, state=state, frame_offset=2, return_dict=False)[0]
        expected = model(**later, state=expected_state, frame_offset=2, return_dict=False)[0]
    assert torch.equal(got, expected)
    assert torch.equal(runner(**inputs).sample, model(**inputs).sample)  # autograd on: the model
    assert runner.captures == 0


def test_bad_settings_and_inputs_are_refused():
    with pytest.raises(ValueError, match="max_graphs"):
        CUDAGraphTransformer(_model(), max_graphs=0)
    runner = CUDAGraphTransformer(_model())
    inputs = make_inputs(runner.model.config, batch=1)
    inputs["hidden_states"][0, 0, 0, 0, 0] = float("nan")
    with torch.no_grad(), pytest.raises(ValueError, match="NaN"):
        runner.graph_inputs(inputs["hidden_states"], inputs["encoder_hidden_states"], inputs["timestep"],
                            inputs["encoder_attention_mask"], None)  # fmt: skip


@cuda_only
@pytest.mark.parametrize("compiled", [False, True])
def test_replays_match_the_model(compiled):
    """Several calls of one shape replay one graph with each call's inputs; a new kept text length or a
    new shape captures another; every output equals the model's."""
    torch._dynamo.reset()
    model = _model("cuda")
    if compiled:
        model.compile_repeated_blocks(fullgraph=True, dynamic=False)
    runner = CUDAGraphTransformer(model, max_graphs=2)
    outputs = []
    with torch.no_grad():
        for seed, frames, real in [
            (0, 3, 200),
            (1, 3, 190),
            (2, 3, 140),
            (3, 3, 100),
            (4, 2, 200),
            (5, 3, 150),
        ]:
            inputs = _to(make_inputs(model.config, batch=2, frames=frames, text_len=200, seed=seed), "cuda")
            # Sample 1 has `real` text tokens, sample 0 half as many: kept 200 columns, or 128 for 100.
            inputs["encoder_attention_mask"] = (
                torch.arange(200, device="cuda") < torch.tensor([[real // 2], [real]], device="cuda")
            ).long()
            got = runner(**inputs).sample
            outputs.append(got)
            assert torch.allclose(got, model(**inputs).sample, rtol=1e-5, atol=1e-5), seed
    # (3 shapes; the third evicts the first, which the last call captures again)
    assert runner.captures == 4
    assert not torch.equal(outputs[0], outputs[1])  # each call's own inputs, not the captured ones


@cuda_only
def test_new_or_moved_weights_capture_new_graphs():
    model = _model("cuda")
    runner = CUDAGraphTransformer(model)
    inputs = _to(make_inputs(model.config, batch=1, seed=1), "cuda")
    with torch.no_grad():
        runner(**inputs)
        block = model.transformer_blocks[0]
        block.attn1.to_out[0].weight = torch.nn.Parameter(block.attn1.to_out[0].weight * 2)  # replaced
        got = runner(**inputs).sample
        assert torch.allclose(got, model(**inputs).sample, rtol=1e-5, atol=1e-5)
        block.attn2.to_q.weight.data = block.attn2.to_q.weight.data * 3  # moved to new memory
        got = runner(**inputs).sample
        assert torch.allclose(got, model(**inputs).sample, rtol=1e-5, atol=1e-5)
        block.attn2.to_q.weight.mul_(0.5)  # in place: the graph reads it where it is
        got = runner(**inputs).sample
        assert torch.allclose(got, model(**inputs).sample, rtol=1e-5, atol=1e-5)
    assert runner.captures == 3


@pytest.mark.parametrize("kind", ["t2v", "i2v"])
def test_pipelines_with_cuda_graphs_match_without(kind, t2v_dir, i2v_dir):
    """`optimize(cuda_graphs=True)` alone (no other change) leaves the video as it was; on a CPU the
    graphs are not used."""
    cls, folder = (SanaVideoPipeline, t2v_dir) if kind == "t2v" else (SanaImageToVideoPipeline, i2v_dir)
    args = dict(prompt="a red circle", negative_prompt="", num_inference_steps=3, height=32, width=32,
                frames=9, max_sequence_length=16, output_type="pt", use_resolution_binning=False)  # fmt: skip
    if kind == "i2v":
        args["image"] = torch.rand(3, 32, 32)
    videos = []
    for graphs in (False, True):
        pipe = cls.from_pretrained(folder).to(DEVICE)
        pipe.set_progress_bar_config(disable=True)
        if graphs:
            pipe.optimize(
                compile=False, vae_dtype=None, channels_last=False, vae_fast_convs=False, cuda_graphs=True
            )
        videos.append(pipe(**args, generator=torch.Generator(DEVICE).manual_seed(0)).frames)
        if graphs:
            assert (pipe._cuda_graphs.captures > 0) == (DEVICE == "cuda")
    assert torch.allclose(videos[0], videos[1], rtol=1e-5, atol=1e-5)
