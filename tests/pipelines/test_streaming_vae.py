"""The streaming Wan VAE decoder: several latent frames a call, the temporal upsamplers rewritten so
torch.compile can trace them, the causal convs rewritten for speed — the same frames as diffusers'
one-frame-a-call decode."""

from __future__ import annotations

import copy

import pytest
import torch

from sana_video.pipelines.streaming_vae import (
    StreamingDecoder,
    make_causal_convs_fast,
    make_upsamplers_compilable,
)
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


def _wide_vae(channels_last: bool):
    """Wider than the pipelines' test VAE (3 channels, some halved to 1), where every layout coincides."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).eval()
    with torch.no_grad():
        for param in vae.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=torch.Generator().manual_seed(1)))
    return _channels_last(vae) if channels_last else vae


def _channels_last(vae):
    for module in vae.modules():
        if isinstance(module, torch.nn.Conv3d):
            module.weight.data = module.weight.data.to(memory_format=torch.channels_last_3d)
    return vae


@torch.no_grad()
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_fast_causal_convs_decode_the_same_frames(layout, monkeypatch):
    """Channels-last, every causal conv of temporal kernel 3 runs as three 2D convs over the frames
    (counted); contiguous, as one 3D conv with its own spatial padding. Both against diffusers' decode
    (fp32), one-shot and streamed, every branch: the first frame, the second, later ones, the cache."""
    vae = _wide_vae(layout == "channels_last")
    latents = torch.randn(1, 16, 5, 4, 6, generator=torch.Generator().manual_seed(0))
    expected = vae.decode(latents).sample
    fast = copy.deepcopy(vae)
    convs = sum(type(m).__name__ == "WanCausalConv3d" for m in fast.decoder.modules())
    assert make_causal_convs_fast(fast.decoder) == convs
    calls = []
    conv2d = torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda *a, **k: calls.append(1) or conv2d(*a, **k))
    one_shot = fast.decode(latents).sample
    fast_calls = len(calls)
    calls.clear()
    vae.decode(latents)
    if layout == "channels_last":
        assert fast_calls > 2 * len(calls)  # the 2D path ran (diffusers' own 2D convs: the upsamplers)
    else:
        assert fast_calls == len(calls)
    assert (one_shot - expected).abs().max() <= 1e-5
    stream = StreamingDecoder(fast)
    frames = torch.cat([stream.decode(latents[:, :, :2]), stream.decode(latents[:, :, 2:])], dim=2)
    assert (frames - expected).abs().max() <= 1e-5


@torch.no_grad()
def test_fast_causal_convs_take_a_batch_of_videos():
    """Two videos at once take the 3D conv path (the 2D one folds the frames of one video into a batch)."""
    vae = _wide_vae(channels_last=True)
    latents = torch.randn(2, 16, 3, 4, 6, generator=torch.Generator().manual_seed(0))
    expected = vae.decode(latents).sample
    make_causal_convs_fast(vae.decoder)
    assert (vae.decode(latents).sample - expected).abs().max() <= 1e-5


@torch.no_grad()
def test_the_decoder_with_fast_convs_compiles_as_one_graph():
    vae = _wide_vae(channels_last=True)
    latents = torch.randn(1, 16, 4, 4, 6, generator=torch.Generator().manual_seed(0))
    expected = vae.decode(latents).sample
    make_upsamplers_compilable(vae.decoder)
    make_causal_convs_fast(vae.decoder)
    torch._dynamo.reset()
    vae.decoder.compile(backend="eager", fullgraph=True)
    try:
        assert (vae.decode(latents).sample - expected).abs().max() <= 1e-5
    finally:
        torch._dynamo.reset()
