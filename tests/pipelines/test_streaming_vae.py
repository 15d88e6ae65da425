"""The streaming Wan VAE decoder: several latent frames a call, and the temporal upsamplers rewritten so
torch.compile can trace them — the same frames as diffusers' one-frame-a-call decode."""

from __future__ import annotations

import copy

import pytest
import torch

from sana_video.pipelines.streaming_vae import StreamingDecoder, make_upsamplers_compilable
from tests.pipelines.components import make_components


def _vae():
    vae = make_components()["vae"].eval()
    with torch.no_grad():  # non-trivial weights everywhere (bias 0 would hide a dropped term)
        for param in vae.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=torch.Generator().manual_seed(1)))
    return vae


@torch.no_grad()
def test_rewritten_upsamplers_decode_the_same_frames():
    """Five latent frames reach every branch: the first (no temporal doubling), the second (after the
    sentinel, zeros before it) and later ones (the cached frames); the decoder here has two temporal
    upsamplers. Bit for bit against diffusers' own forward, one-shot and streamed in chunks."""
    vae = _vae()
    latents = torch.randn(1, 16, 5, 4, 6, generator=torch.Generator().manual_seed(0))
    expected = vae.decode(latents).sample
    changed = copy.deepcopy(vae)
    assert make_upsamplers_compilable(changed.decoder) == 2
    assert torch.equal(changed.decode(latents).sample, expected)
    stream = StreamingDecoder(changed)
    frames = torch.cat([stream.decode(latents[:, :, :2]), stream.decode(latents[:, :, 2:])], dim=2)
    assert torch.equal(frames, vae.decode(latents).sample)


@torch.no_grad()
def test_the_decoder_compiles_as_one_graph():
    """With the rewritten upsamplers the decoder's forward traces without a graph break in any of its
    three phases (first frame, second, later ones): fullgraph=True raises on any break."""
    vae = _vae()
    latents = torch.randn(1, 16, 4, 4, 6, generator=torch.Generator().manual_seed(0))
    expected = vae.decode(latents).sample
    make_upsamplers_compilable(vae.decoder)
    torch._dynamo.reset()
    vae.decoder.compile(backend="eager", fullgraph=True)
    try:
        assert torch.equal(vae.decode(latents).sample, expected)
    finally:
        torch._dynamo.reset()


@torch.no_grad()
@pytest.mark.parametrize("rewritten", [False, True])
def test_several_frames_a_call_decode_the_same_frames(rewritten):
    """Streamed in uneven chunks, 3 latent frames a decoder call (calls straddling the chunks' own split
    points, a last call of one frame), against diffusers' one-shot decode, which takes one frame a call."""
    vae = _vae()
    latents = torch.randn(1, 16, 9, 4, 6, generator=torch.Generator().manual_seed(0))
    expected = vae.decode(latents).sample
    if rewritten:
        make_upsamplers_compilable(vae.decoder)
    stream = StreamingDecoder(vae, frames_per_call=3)
    calls = []
    hook = vae.decoder.register_forward_pre_hook(lambda _, args: calls.append(args[0].shape[2]))
    try:
        frames = torch.cat([stream.decode(latents[:, :, a:b]) for a, b in ((0, 2), (2, 7), (7, 9))], dim=2)
    finally:
        hook.remove()
    assert calls == [1, 1, 3, 2, 2]  # the video's first frame alone; then at most 3 within each chunk
    assert frames.shape == expected.shape
    assert (frames - expected).abs().max() <= 1e-5


def test_frames_per_call_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        StreamingDecoder(_vae(), frames_per_call=0)


@torch.no_grad()
def test_a_compiled_decoder_needs_three_graphs_for_any_chunking():
    """With static shapes (as `optimize()` compiles it) the decoder traces the first frame, the second and
    the later ones — and no more for other chunk or video lengths, whose frame slices would otherwise
    differ in strides, each a recompile until torch.compile's limit (then it runs eager)."""
    vae = _vae()
    latents = torch.randn(1, 16, 9, 4, 6, generator=torch.Generator().manual_seed(0))
    expected = vae.decode(latents).sample
    make_upsamplers_compilable(vae.decoder)
    graphs = []

    def counting(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    torch._dynamo.reset()
    vae.decoder.compile(backend=counting, dynamic=False)
    try:
        stream = StreamingDecoder(vae)
        frames = torch.cat([stream.decode(latents[:, :, a:b]) for a, b in ((0, 4), (4, 7), (7, 9))], dim=2)
        StreamingDecoder(vae).decode(latents[:, :, :5])  # another video, another length
        assert len(graphs) == 3
        assert torch.equal(frames, expected)
    finally:
        torch._dynamo.reset()
