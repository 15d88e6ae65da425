"""Long video: the chunk loop against an independent implementation, streaming decode, prompt schedules."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from sana_video import LongSanaVideoPipeline
from sana_video.model import LayerState, SanaVideoState
from sana_video.ops import LinearAttentionState
from sana_video.pipelines.long_video import chunk_prompts
from sana_video.pipelines.text import COMPLEX_HUMAN_INSTRUCTION

SIZE = dict(height=32, width=32, max_sequence_length=16)


@pytest.fixture(scope="module")
def pipe(t2v_dir):
    pipe = LongSanaVideoPipeline.from_pretrained(t2v_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_long(pipe, prompts, frames, chunk, sampler, guidance, steps, seed):
    """The reference's way: one state per chunk (its own contribution), re-summed for every chunk;
    all latents kept and decoded at once at the end. Sampling steps written out by hand."""
    transformer, vae = pipe.transformer, pipe.vae
    latent_frames = (frames - 1) // 4 + 1
    sizes = (
        [latent_frames]
        if latent_frames <= chunk
        else [chunk + latent_frames % chunk] + [chunk] * (latent_frames // chunk - 1)
    )
    generator = torch.Generator().manual_seed(seed)

    def encode(text, instruction):
        embeds, mask, *_ = pipe.encode_prompt(
            text, False, max_sequence_length=16, complex_human_instruction=instruction
        )
        return embeds, mask

    negative = encode("", None) if guidance > 1 else None
    contributions, latents_all, offset = [], [], 0

    def model(x, t, context, text, return_state=False):
        embeds, mask = text
        t = torch.full((x.shape[0],), float(t))
        if negative is not None:
            x, t = torch.cat([x, x]), torch.cat([t, t])
            embeds, mask = torch.cat([negative[0], embeds]), torch.cat([negative[1], mask])
        out = transformer(x, embeds, t, encoder_attention_mask=mask, state=context, frame_offset=offset,
                          return_state=return_state, return_dict=False)  # fmt: skip
        if return_state:
            return out[1]
        v = out[0]
        if negative is not None:
            uncond, cond = v.chunk(2)
            v = uncond + guidance * (cond - uncond)
        return v

    for index, size in enumerate(sizes):
        context = None
        if contributions:  # re-sum every earlier chunk's own sums; the temporal frame of the last one
            layers = []
            for layer in range(len(transformer.transformer_blocks)):
                kv = sum(c[layer][0] for c in contributions)
                k_sum = sum(c[layer][1] for c in contributions)
                layers.append(LayerState(LinearAttentionState(kv, k_sum), contributions[-1][layer][2]))
            context = SanaVideoState(layers, offset)
        text = encode(prompts[index], COMPLEX_HUMAN_INSTRUCTION)
        x = torch.randn(1, 16, size, 4, 4, generator=generator)
        if sampler == "few-step":
            ts = [1000.0, 960.0, 889.0, 727.0]
            for i, t in enumerate(ts):
                x0 = x - t / 1000 * model(x, t, context, text)
                x = (
                    x0
                    if i == len(ts) - 1
                    else (1 - ts[i + 1] / 1000) * x0
                    + ts[i + 1] / 1000 * torch.randn(x.shape, generator=generator)
                )
        else:
            scheduler = FlowMatchEulerDiscreteScheduler(shift=8.0)
            scheduler.set_timesteps(steps)
            for i, t in enumerate(scheduler.timesteps):
                x = x + (scheduler.sigmas[i + 1] - scheduler.sigmas[i]) * model(x, t, context, text)
        latents_all.append(x)
        if index < len(sizes) - 1:
            extended = model(x, 0.0, context, text, return_state=True)
            own = []
            for layer, new in enumerate(extended.layers):
                kv, k_sum = new.attention
                if context is not None:
                    kv, k_sum = (
                        kv - context.layers[layer].attention.kv,
                        k_sum - context.layers[layer].attention.k_sum,
                    )
                own.append((kv, k_sum, new.last_frame))
            contributions.append(own)
        offset += size
    latents = torch.cat(latents_all, dim=2)
    mean, inv_std = pipe._latent_stats(latents.device, latents.dtype)
    with torch.no_grad():
        video = vae.decode(latents / inv_std + mean).sample
    return (video[0].permute(1, 2, 3, 0) * 0.5 + 0.5).clamp(0, 1)  # [F, H, W, 3]


@pytest.mark.parametrize(
    "frames, chunk, sampler, guidance",
    [
        (9, 3, "few-step", 1.0),  # one chunk
        (25, 2, "few-step", 1.0),  # 7 latent frames: [3, 2, 2]
        (33, 3, "few-step", 1.0),  # 9 latent frames: [3, 3, 3]
        (25, 2, "euler", 3.0),  # with guidance: one state per guidance branch
    ],
)
def test_matches_the_per_chunk_state_reference(pipe, frames, chunk, sampler, guidance):
    prompts_by_chunk = ["a red circle", "a blue square", "a green star"]
    latent_frames = (frames - 1) // 4 + 1
    count = 1 if latent_frames <= chunk else latent_frames // chunk
    prompts = [prompts_by_chunk[i % 3] for i in range(count)]
    kwargs = dict(
        frames=frames, chunk_frames=chunk, sampler=sampler, guidance_scale=guidance, num_inference_steps=3
    )
    with torch.no_grad():
        got = pipe(prompts, **kwargs, **SIZE, generator=torch.Generator().manual_seed(5)).frames[0]
        expected = reference_long(pipe, prompts, frames, chunk, sampler, guidance, 3, seed=5)
    assert got.shape == (frames, 32, 32, 3)
    assert (torch.from_numpy(got) - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("frames_per_call", [1, 3])
def test_streaming_decode_equals_one_shot_decode(pipe, frames_per_call):
    """Chunk by chunk (3 latent frames a decoder call: calls split inside chunks of 2 or 3 frames too)
    against diffusers' one-shot decode of all the latents, one frame a call."""
    kwargs = dict(frames=29, chunk_frames=2, **SIZE)
    latents = pipe("a cat", output_type="latent", **kwargs, generator=torch.Generator().manual_seed(1)).frames
    one_shot = pipe.decode_latents(latents, output_type="np")
    pipe.vae_frames_per_call = frames_per_call
    try:
        frames = pipe("a cat", **kwargs, generator=torch.Generator().manual_seed(1)).frames
        whole = pipe.decode_latents(latents, output_type="np")  # the pipeline's own decode, same setting
    finally:
        del pipe.vae_frames_per_call  # back to the class default
    assert abs(whole - one_shot).max() <= 1e-5
    assert latents.shape[2] == 8 and frames.shape == one_shot.shape
    assert abs(frames - one_shot).max() <= 1e-5


def test_prompts_switch_where_scheduled(pipe):
    cat, dog = "a cat", "a dog on a plain white background moves slowly left"
    calls = []
    hook = pipe.text_encoder.register_forward_pre_hook(lambda *_: calls.append(1))
    kwargs = dict(frames=33, chunk_frames=2, output_type="latent", **SIZE)  # 9 latent frames: [3, 2, 2, 2]
    try:
        switched = pipe([cat, cat, dog, dog], **kwargs, generator=torch.Generator().manual_seed(2)).frames
    finally:
        hook.remove()
    assert len(calls) == 2  # each distinct prompt is encoded once
    steady = pipe(cat, **kwargs, generator=torch.Generator().manual_seed(2)).frames
    assert torch.equal(switched[:, :, :5], steady[:, :, :5])  # chunks 0 and 1: not a frame early
    assert (switched[:, :, 5:] - steady[:, :, 5:]).abs().max() > 1e-2  # chunk 2 on: the new prompt


def test_schedule_in_seconds_maps_to_chunks():
    # 97 frames at 16 fps, chunks of 4 latent frames [5, 4, 4, 4, 4, 4] start at video frames
    # 0, 17, 33, 49, 65, 81, i.e. 0, 1.06, 2.06, 3.06, 4.06, 5.06 s.
    schedule = [(0.0, "a"), (2.0, "b"), (3.0, "c")]
    assert chunk_prompts(schedule, 97, 16, 4) == ["a", "a", "b", "c", "c", "c"]
    assert chunk_prompts([(0.0, "a"), (17 / 16, "b")], 97, 16, 4) == ["a", "b", "b", "b", "b", "b"]  # exactly
    assert chunk_prompts([(0.0, "a"), (1.1, "b"), (1.5, "c")], 97, 16, 4)[:3] == [
        "a",
        "a",
        "c",
    ]  # never early
    with pytest.raises(ValueError, match="starts at 0"):
        chunk_prompts([(1.0, "a")], 97, 16, 4)


def test_image_start_keeps_the_first_latent_frame(pipe):
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    latents = pipe("a cat", image=image, frames=17, chunk_frames=2, output_type="latent", **SIZE,
                   generator=torch.Generator().manual_seed(0)).frames  # fmt: skip
    expected = pipe.encode_image_latents(pipe.video_processor.preprocess(image, height=32, width=32))
    assert torch.equal(latents[:, :, :1], expected)


def _diverging_after_the_first_chunk(pipe, monkeypatch):
    predict = pipe.predict

    def nan_later(x, t, *args, frame_offset=0, **kwargs):
        v, state = predict(x, t, *args, frame_offset=frame_offset, **kwargs)
        return (v * math.nan if frame_offset > 0 else v), state

    monkeypatch.setattr(pipe, "predict", nan_later)


def test_a_diverging_chunk_raises_before_it_is_decoded(pipe, monkeypatch):
    """The model's per-call finiteness check is off in the chunk loop (it waits for the GPU at every
    call); each finished chunk is checked instead."""
    _diverging_after_the_first_chunk(pipe, monkeypatch)
    chunks = pipe.stream("a red circle", frames=25, chunk_frames=2, **SIZE)
    assert next(chunks).frames is not None
    with pytest.raises(FloatingPointError, match="latents of chunk 1 contain NaN"):
        next(chunks)
    with pytest.raises(FloatingPointError, match="contain NaN"):
        pipe("a red circle", frames=25, chunk_frames=2, output_type="latent", **SIZE)
    assert pipe.transformer._check_finite  # the model checks again outside the loop


def test_write_stops_at_a_diverging_chunk_keeping_the_frames_before(pipe, monkeypatch, tmp_path):
    from sana_video.video import read_video

    _diverging_after_the_first_chunk(pipe, monkeypatch)
    with pytest.raises(FloatingPointError, match="latents of chunk 1"):
        pipe.write(tmp_path / "v.mp4", "a red circle", frames=25, chunk_frames=2, seed=0, **SIZE)
    partial = next(tmp_path.glob("*.mp4"))
    assert len(read_video(partial)[0]) == 9  # chunk 0: 3 latent frames


def test_rollouts_beyond_the_rope_table_are_refused(pipe):
    # The tiny model's RoPE table has 32 positions: at most 32 latent frames = 125 video frames.
    with pytest.raises(ValueError, match=r"at most 32 latent frames \(125 video frames\)"):
        pipe("a cat", frames=129, **SIZE)


def test_prompt_count_must_match_chunks(pipe):
    with pytest.raises(ValueError, match=r"one string per chunk \(3 chunks"):
        pipe(["a", "b"], frames=25, chunk_frames=2, **SIZE)


def test_write_with_compiled_models_gives_the_same_video(t2v_dir, tmp_path):
    """Compiled graphs are built during the first chunks, which then finish in turn (not beside a
    compiling thread); the video is the same."""
    from sana_video.video import read_video

    args = dict(frames=33, chunk_frames=2, seed=3, **SIZE)
    plain = LongSanaVideoPipeline.from_pretrained(t2v_dir)
    plain.set_progress_bar_config(disable=True)
    plain.write(tmp_path / "plain.mp4", "a red circle", **args)
    fast = LongSanaVideoPipeline.from_pretrained(t2v_dir)
    fast.set_progress_bar_config(disable=True)
    torch._dynamo.reset()
    fast.transformer.compile_repeated_blocks(fullgraph=True, dynamic=False, backend="eager")
    fast.vae.decoder.compile(backend="eager")
    fast.write(tmp_path / "fast.mp4", "a red circle", **args)
    assert (read_video(tmp_path / "fast.mp4")[0] == read_video(tmp_path / "plain.mp4")[0]).all()


def test_optimize_sets_the_vae_as_asked(t2v_dir):
    pipe = LongSanaVideoPipeline.from_pretrained(t2v_dir).optimize(
        compile=False, vae_dtype=torch.bfloat16, vae_frames_per_call=4
    )
    conv = next(m for m in pipe.vae.modules() if isinstance(m, torch.nn.Conv3d))
    assert pipe.vae.dtype == torch.bfloat16 and conv.weight.is_contiguous(
        memory_format=torch.channels_last_3d
    )
    assert pipe.vae_frames_per_call == 4 and LongSanaVideoPipeline.vae_frames_per_call == 1
    with pytest.raises(ValueError, match="vae_frames_per_call must be at least 1, got 0"):
        pipe.optimize(compile=False, vae_frames_per_call=0)
    frames = pipe(
        "a cat", frames=9, chunk_frames=2, **SIZE, generator=torch.Generator().manual_seed(0)
    ).frames
    assert frames.shape == (1, 9, 32, 32, 3)


@torch.no_grad()
def test_optimize_fp8_quantizes_the_blocks(t2v_dir):
    from sana_video.model.fp8 import Fp8Linear

    kwargs = dict(frames=9, chunk_frames=2, output_type="pt", **SIZE)
    plain = LongSanaVideoPipeline.from_pretrained(t2v_dir)
    plain.set_progress_bar_config(disable=True)
    quantized = LongSanaVideoPipeline.from_pretrained(t2v_dir).optimize(
        compile=False, vae_dtype=None, channels_last=False, fp8=True
    )
    quantized.set_progress_bar_config(disable=True)
    assert isinstance(quantized.transformer.transformer_blocks[0].attn1.to_qkv, Fp8Linear)
    a = plain("a cat", generator=torch.Generator().manual_seed(0), **kwargs).frames
    b = quantized("a cat", generator=torch.Generator().manual_seed(0), **kwargs).frames
    error = ((a - b).norm() / a.norm()).item()
    assert 0 < error <= 0.1, error
