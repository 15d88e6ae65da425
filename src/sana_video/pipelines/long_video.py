"""Long videos at constant memory: chunk after chunk through the transformer's state, each chunk decoded
and written as it is finished, resumable after an interruption (SPEC §4)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from sana_video import _transfer
from sana_video._files import atomic_torch_save
from sana_video.model import SanaVideoState
from sana_video.pipelines import sizes
from sana_video.pipelines.base import SanaVideoPipelineBase, SanaVideoPipelineOutput
from sana_video.pipelines.streaming_vae import StreamingDecoder
from sana_video.pipelines.text import COMPLEX_HUMAN_INSTRUCTION
from sana_video.sampling import with_shift
from sana_video.sampling.long import FEW_STEP_TIMESTEPS, ReNoiseScheduler, rollout, split_chunks
from sana_video.sampling.schedulers import image_to_video_scheduler, set_timesteps

logger = logging.getLogger(__name__)

SAMPLERS = ("few-step", "euler")
_CHECKPOINT_FORMAT = "sana-video-long/1"


@dataclass
class LongVideoChunk:
    """One finished chunk: its frames [f, H, W, 3] float in [0, 1] (None with decode=False), its latents."""

    index: int
    num_chunks: int
    first_frame: int  # index of its first video frame
    frames: torch.Tensor | None
    latents: torch.Tensor
    state: SanaVideoState | None
    _decoder: StreamingDecoder | None = None
    _generator: torch.Generator | None = None

    def checkpoint(self) -> dict:
        """What continuing after this chunk needs (CPU tensors): `stream(..., resume=checkpoint)`."""
        if self.state is None:
            raise ValueError("the last chunk has nothing to continue")
        return {
            "next_chunk": self.index + 1,
            "state": {k: v.detach().cpu() for k, v in self.state.tensors().items()},
            "state_frames": self.state.num_frames,
            "vae": self._decoder.state_dict() if self._decoder is not None else None,
            "rng": self._generator.get_state() if self._generator is not None else None,
        }


class _ChunkModel:
    """The transformer as the chunk loop sees it: per-chunk text, guidance over a doubled batch (and a
    doubled state: one context per guidance branch)."""

    def __init__(self, pipe, texts, negative, guidance: float):
        self.pipe, self.guidance = pipe, guidance
        if guidance > 1.0:  # doubled once per prompt: the model reads a mask it has seen for free
            doubled: dict[int, tuple] = {}
            for embeds, mask in texts:
                if id(embeds) not in doubled:
                    doubled[id(embeds)] = torch.cat([negative[0], embeds]), torch.cat([negative[1], mask])
            texts = [doubled[id(embeds)] for embeds, _ in texts]
        self.texts = texts

    def _run(self, x, t, state, offset, chunk, return_state):
        text, mask = self.texts[chunk]
        if self.guidance > 1.0:
            x, t = torch.cat([x, x]), torch.cat([t, t])
        # The chunk's latents are checked once it is done (check_finite), not at every call: that check
        # waits for the GPU.
        transformer = self.pipe.transformer
        with getattr(transformer, "unchecked_inputs", contextlib.nullcontext)():
            return self.pipe.predict(
                x, t, text, mask, state=state, frame_offset=offset, return_state=return_state
            )

    def velocity(self, x, t, state, offset, chunk):
        v, _ = self._run(x, t, state, offset, chunk, False)
        if self.guidance > 1.0:
            uncond, cond = v.chunk(2)
            v = uncond + self.guidance * (cond - uncond)
        return v

    def extend(self, x, state, offset, chunk):
        """One pass over the clean chunk at t = 0; its state is the context for the next chunk."""
        return self._run(x, torch.zeros(x.shape[0], device=x.device), state, offset, chunk, True)[1]


class LongSanaVideoPipeline(SanaVideoPipelineBase):
    """Minute-long SANA-Video: block-autoregressive generation with a constant-memory context.

    The latent frames are split into chunks (`chunk_frames`, the first taking the remainder). Each chunk
    is denoised by the transformer reading the running state of all earlier chunks; then one pass over
    the clean chunk at t = 0 extends the state. Two samplers: "few-step" (the distilled LongSANA
    checkpoint's timesteps [1000, 960, 889, 727], re-noising between steps, no guidance by default) and
    "euler" (FlowMatch Euler, `num_inference_steps` per chunk, optional guidance).

        pipe = LongSanaVideoPipeline.from_pretrained(path, torch_dtype=torch.bfloat16)
        pipe.write("minute.mp4", "a red fox running through snow motion score: 10.", frames=961)
    """

    # Generation

    @torch.no_grad()  # (a generator: no_grad holds across every resumption)
    def stream(
        self,
        prompt: str | list[str],
        *,
        negative_prompt: str = "",
        frames: int = 961,
        height: int = 480,
        width: int = 832,
        chunk_frames: int = 10,
        sampler: str = "few-step",
        num_inference_steps: int = 50,
        timesteps: list[float] | None = None,
        guidance_scale: float | None = None,
        shift: float | None = None,
        image=None,
        generator: torch.Generator | None = None,
        max_sequence_length: int = 300,
        complex_human_instruction: list[str] | None = COMPLEX_HUMAN_INSTRUCTION,
        attention_kwargs: dict | None = None,
        decode: bool = True,
        resume: dict | None = None,
    ) -> Iterator[LongVideoChunk]:
        """Generate chunk by chunk, yielding each finished chunk. Memory does not grow with `frames`.

        Args:
            prompt: one prompt, or one per chunk (`chunk_prompts` maps a time schedule to chunks).
            frames: video frames, 4k+1 (961 = 1 minute at 16 fps); at most 4·(rope_max_seq_len − 1) + 1.
            chunk_frames: latent frames per chunk (10 = 40 video frames); the first chunk takes the rest.
            sampler: "few-step" (default; `timesteps` overrides its four) or "euler"
                (`num_inference_steps` per chunk, `shift`, default 8).
            guidance_scale: classifier-free guidance (default 1, off, for few-step; 6 for euler).
            image: an optional first frame.
            generator: draws each chunk's noise (and the few-step sampler's re-noising), in order.
            resume: the `checkpoint` of a chunk (from `write`) to continue after.
        """
        plan = self._plan(frames, height, width, chunk_frames, sampler, prompt)
        guidance = guidance_scale if guidance_scale is not None else (1.0 if sampler == "few-step" else 6.0)
        self._attention_kwargs = attention_kwargs
        device = self._execution_device

        # Text: encoded once per distinct prompt.
        prompts = plan["prompts"]
        encoded: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for text in dict.fromkeys(prompts):
            embeds, mask, *_ = self.encode_prompt(
                text,
                False,
                device=device,
                max_sequence_length=max_sequence_length,
                complex_human_instruction=complex_human_instruction,
            )
            encoded[text] = (embeds, mask)
        negative = None
        if guidance > 1.0:
            negative = self.encode_prompt(negative_prompt, False, device=device, max_sequence_length=max_sequence_length,
                                          complex_human_instruction=None)[:2]  # fmt: skip
        model = _ChunkModel(self, [encoded[p] for p in prompts], negative, guidance)

        latent_shape = (
            1,
            self.transformer.config.in_channels,
            height // self.vae_scale_factor_spatial,
            width // self.vae_scale_factor_spatial,
        )

        def noise(chunk: int, count: int) -> torch.Tensor:
            shape = (latent_shape[0], latent_shape[1], count, *latent_shape[2:])
            return _transfer.randn(shape, generator, device)

        def make_scheduler():
            if sampler == "few-step":
                scheduler = ReNoiseScheduler(tuple(timesteps) if timesteps else FEW_STEP_TIMESTEPS)
                scheduler.set_timesteps(device=device)
                return scheduler
            scheduler = image_to_video_scheduler(self.scheduler)
            scheduler = with_shift(scheduler, shift) if shift is not None else scheduler
            set_timesteps(scheduler, num_inference_steps, device)
            return scheduler

        first_frame = None
        if image is not None:
            pixels = self.video_processor.preprocess(image, height=height, width=width)
            first_frame = self.encode_image_latents(pixels[:1])

        decoder = StreamingDecoder(self.vae, self.vae_frames_per_call) if decode else None
        state, start = None, 0
        if resume is not None:
            state, start = self._restore(resume, decoder, generator, device)
        mean, inv_std = self._latent_stats(device, self.vae.dtype)
        chunk_sizes = plan["chunks"]
        for chunk in rollout(model, make_scheduler, chunk_sizes, noise, generator=generator, state=state,
                             start=start, first_frame=first_frame,
                             progress=lambda steps: self.progress_bar(total=steps)):  # fmt: skip
            pixels = None
            if decoder is not None:
                check_finite(chunk.latents, chunk.index)  # decode=False: the consumer checks
                video = decoder.decode(chunk.latents.to(self.vae.dtype) / inv_std + mean)  # [1, 3, f, H, W]
                pixels = (video[0].permute(1, 2, 3, 0).float() * 0.5 + 0.5).clamp(0, 1)  # [f, H, W, 3]
            first = 0 if chunk.frame_offset == 0 else 1 + 4 * (chunk.frame_offset - 1)
            yield LongVideoChunk(
                chunk.index, len(chunk_sizes), first, pixels, chunk.latents, chunk.state, decoder, generator
            )
        self.maybe_free_model_hooks()

    def __call__(
        self, prompt: str | list[str], *, output_type: str = "np", **kwargs
    ) -> SanaVideoPipelineOutput:
        """Generate and return the whole video (held in memory: for short videos; use `write` or
        `stream` for long ones). output_type: "np" [1, F, H, W, 3], "pt" [1, F, 3, H, W], "pil", "latent"."""
        if output_type not in ("np", "pt", "pil", "latent"):
            raise ValueError(f"output_type must be 'np', 'pt', 'pil' or 'latent' (got {output_type!r})")
        chunks = list(self.stream(prompt, decode=output_type != "latent", **kwargs))
        if output_type == "latent":
            latents = torch.cat([c.latents for c in chunks], dim=2)
            check_finite(latents)
            return SanaVideoPipelineOutput(frames=latents)
        video = torch.cat([c.frames for c in chunks])  # [F, H, W, 3]
        if output_type == "pt":
            return SanaVideoPipelineOutput(frames=video.permute(0, 3, 1, 2)[None])
        if output_type == "pil":
            return SanaVideoPipelineOutput(frames=[self.video_processor.numpy_to_pil(video.cpu().numpy())])
        return SanaVideoPipelineOutput(frames=video.cpu().numpy()[None])

    def write(
        self,
        path: str | os.PathLike,
        prompt: str | list[str],
        *,
        fps: float = 16,
        seed: int | None = None,
        resume: bool = False,
        metadata: dict | None = None,
        on_chunk=None,
        **kwargs,
    ) -> Path:
        """Generate into an MP4 at `path`, chunk by chunk, resumable.

        While running, frames go to `<name>.partial.mp4` (playable at any time) and after every chunk a
        checkpoint `<name>.checkpoint.pt` records where the run is. When the video is complete both are
        replaced by `path` (and `<name>.json` with `metadata`). After an interruption (Ctrl-C, a crash, a
        killed process), `resume=True` with the same arguments continues and yields the same video as an
        uninterrupted run. `seed` (random if None) seeds a CPU generator. `on_chunk(chunk)` is called
        after each chunk is written.
        """
        from sana_video.video import ChunkedVideoWriter, write_json

        path = Path(path)
        partial, saved_at = partial_path(path), checkpoint_path(path)
        if resume and not saved_at.exists():
            raise ValueError(f"nothing to resume: no checkpoint {saved_at}")
        if not resume and saved_at.exists():
            raise ValueError(
                f"{saved_at} holds an interrupted run of this video: resume it, or delete it and "
                f"{partial.name} to start again"
            )
        checkpoint = torch.load(saved_at, weights_only=False) if resume else None
        job = {"prompt": prompt, "fps": float(fps), **{k: v for k, v in kwargs.items() if k != "image"}}
        job["image"] = kwargs.get("image") is not None
        if checkpoint is not None:
            if checkpoint["format"] != _CHECKPOINT_FORMAT:
                raise ValueError(f"{saved_at} is not a long-video checkpoint of this version")
            if checkpoint["job"] != _jsonable(job) or (seed is not None and seed != checkpoint["seed"]):
                raise ValueError(f"{saved_at} was made for other arguments; resume with the same ones")
            seed = checkpoint["seed"]
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
        generator = torch.Generator("cpu").manual_seed(seed)

        resume_from = (
            None
            if checkpoint is None
            else (partial, checkpoint["frames_before_chunk"], checkpoint["chunk_packets"])
        )
        writer = ChunkedVideoWriter(partial, fps=fps, resume_from=resume_from)
        finisher = _ChunkFinisher(self, writer, saved_at, {"format": _CHECKPOINT_FORMAT, "job": _jsonable(job), "seed": seed},
                                  checkpoint, on_chunk)  # fmt: skip
        # Compiled models compile their graphs during the first chunks; FX tracing is process-wide and
        # a compiled function called on another thread meanwhile raises, so those chunks are decoded in
        # turn (their encoding and checkpoint, which compile nothing, still overlap the next chunk).
        in_turn = 3 if _has_compiled_modules(self) else 0
        try:
            for chunk in self.stream(prompt, generator=generator, resume=checkpoint, decode=False, **kwargs):
                finisher.submit(chunk, generator.get_state())
                if chunk.index - (checkpoint or {}).get("next_chunk", 0) < in_turn:
                    finisher.wait_decoded()
            finisher.wait()
        except BaseException:
            # Interrupted: let the chunk in flight finish, keep the partial video playable and the
            # checkpoint for `resume=True`.
            with contextlib.suppress(BaseException):
                finisher.wait()
            with contextlib.suppress(Exception):
                writer.close()
            raise
        finally:
            finisher.shutdown()
        self.last_write_seconds = dict(finisher.seconds)
        writer.close()
        os.replace(partial, path)
        saved_at.unlink(missing_ok=True)
        if metadata is not None:
            write_json(
                path.with_suffix(".json"), {**metadata, "seed": seed, "frames_written": writer.frames_written}
            )
        return path

    # Internals

    def _plan(self, frames, height, width, chunk_frames, sampler, prompt) -> dict:
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS} (got {sampler!r})")
        sizes.check_frames(frames, self.vae_scale_factor_temporal)
        sizes.check_size("height", height, self.size_multiple)
        sizes.check_size("width", width, self.size_multiple)
        latent_frames = (frames - 1) // self.vae_scale_factor_temporal + 1
        limit = self.transformer.config.rope_max_seq_len * self.transformer.config.patch_size[0]
        if latent_frames > limit:
            raise ValueError(
                f"frames={frames} is {latent_frames} latent frames; RoPE positions are absolute, so this model "
                f"makes at most {limit} latent frames ({(limit - 1) * self.vae_scale_factor_temporal + 1} video frames)"
            )
        chunks = split_chunks(latent_frames, chunk_frames)
        prompts = [prompt] * len(chunks) if isinstance(prompt, str) else list(prompt)
        if len(prompts) != len(chunks) or not all(isinstance(p, str) for p in prompts):
            raise ValueError(
                f"prompt must be a string or a list of one string per chunk ({len(chunks)} chunks: {chunks} "
                f"latent frames); got {len(prompts)} prompts"
            )
        return {"chunks": chunks, "prompts": prompts}

    def _restore(self, checkpoint: dict, decoder, generator, device):
        state = SanaVideoState.from_tensors(
            {k: v.to(device) for k, v in checkpoint["state"].items()}, num_frames=checkpoint["state_frames"]
        )
        if decoder is not None and checkpoint["vae"] is not None:
            decoder.load_state_dict(checkpoint["vae"])
        if generator is not None and checkpoint["rng"] is not None:
            generator.set_state(checkpoint["rng"])
        return state, checkpoint["next_chunk"]


def check_finite(latents: torch.Tensor, chunk: int | None = None) -> None:
    """Raise if a finished chunk's latents hold NaN or infinity (the model diverged): before they are
    decoded and written. (Waits for the GPU: once a chunk, where a check of every model call would wait
    at every step.)"""
    if not bool(torch.isfinite(latents).all()):
        which = "the latents" if chunk is None else f"the latents of chunk {chunk}"
        raise FloatingPointError(f"{which} contain NaN or infinite values")


class _ChunkFinisher:
    """Finish each chunk off the main thread while the next one is denoised: a decode thread (on its own
    CUDA stream), a write thread (H.264 encoding) and a save thread (the checkpoint), each chunk passing
    through them in turn, so GPU decoding, encoding and saving overlap too. At most one chunk is
    decoding, two are waiting to be written and one checkpoint is being saved, so memory stays flat.
    (On an H200 at 480p the write thread used to encode and save in turn: 0.94 s a chunk of its 1.08.)

    A checkpoint may land after the next chunk's frames are in the file: resuming copies only the frames
    the checkpoint counts, so a crash in between loses nothing."""

    def __init__(self, pipe, writer, checkpoint_at: Path, header: dict, resume: dict | None, on_chunk):
        from concurrent.futures import ThreadPoolExecutor

        self.pipe, self.writer, self.checkpoint_at, self.header, self.on_chunk = (
            pipe,
            writer,
            checkpoint_at,
            header,
            on_chunk,
        )
        self.decoder = StreamingDecoder(pipe.vae, pipe.vae_frames_per_call)
        if resume is not None:
            self.decoder.load_state_dict(resume["vae"])
        self.cuda_stream = torch.cuda.Stream() if pipe.vae.device.type == "cuda" else None
        self.latent_stats: dict = {}  # per device: made once (from lists: a copy that waits for the GPU)
        self.decode_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sana-video-decode")
        self.write_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sana-video-write")
        self.save_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sana-video-save")
        self.decoding = None
        self.writing: list = []
        self.saving = None  # the checkpoint being saved (submitted by the write thread)
        self.seconds = {"decode": 0.0, "encode": 0.0, "checkpoint": 0.0}  # time spent per stage

    def submit(self, chunk: LongVideoChunk, rng: torch.Tensor) -> None:
        if self.decoding is not None:
            self.decoding.result()  # one chunk decoding at a time
        while len(self.writing) >= 2:
            self.writing.pop(0).result()
        ready = None
        if self.cuda_stream is not None:
            ready = torch.cuda.Event()
            ready.record()  # the chunk's latents are complete on the main stream here
        self.decoding = self.decode_pool.submit(self._decode, chunk, ready)
        self.writing.append(self.write_pool.submit(self._write, chunk, rng, self.decoding))

    def wait_decoded(self) -> None:
        """Wait for the chunk being decoded (re-raising a failure)."""
        if self.decoding is not None:
            self.decoding.result()

    def wait(self) -> None:
        """Wait for every chunk in flight (re-raising a failure of a worker)."""
        pending, self.writing = self.writing, []
        for future in pending:
            future.result()
        if self.saving is not None:  # every write is done: nothing submits another checkpoint now
            saving, self.saving = self.saving, None
            saving.result()

    def shutdown(self) -> None:
        self.decode_pool.shutdown(wait=True)
        self.write_pool.shutdown(wait=True)
        self.save_pool.shutdown(wait=True)

    @torch.no_grad()
    def _decode(self, chunk: LongVideoChunk, ready):
        pipe = self.pipe
        start = time.perf_counter()
        with (
            torch.cuda.stream(self.cuda_stream) if self.cuda_stream is not None else contextlib.nullcontext()
        ):
            if ready is not None:
                self.cuda_stream.wait_event(ready)
            check_finite(chunk.latents, chunk.index)
            device = chunk.latents.device
            if device not in self.latent_stats:
                self.latent_stats[device] = pipe._latent_stats(device, pipe.vae.dtype)
            mean, inv_std = self.latent_stats[device]
            video = self.decoder.decode(chunk.latents.to(pipe.vae.dtype) / inv_std + mean)  # [1, 3, f, H, W]
            frames = (
                ((video[0].permute(1, 2, 3, 0).float() * 0.5 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
            )
            # Copied here, on this stream (not queued behind the next chunk), through pinned memory: a
            # pageable copy would hold up the main thread's launches while it lasts (_transfer.py).
            tensors = {"frames": frames}
            if chunk.state is not None:
                tensors.update({f"state.{k}": v for k, v in chunk.state.tensors().items()})
            tensors = _transfer.to_host(tensors)
            frames = tensors.pop("frames")
            context = None
            if chunk.state is not None:
                context = {k[len("state.") :]: v for k, v in tensors.items()}, self.decoder.state_dict()
        self.seconds["decode"] += time.perf_counter() - start
        return frames, context

    def _write(self, chunk: LongVideoChunk, rng: torch.Tensor, decoding) -> None:
        frames, context = decoding.result()
        start = time.perf_counter()
        before = self.writer.frames_written
        packets = self.writer.write_chunk(frames.numpy())
        encoded = time.perf_counter()
        if chunk.state is not None:
            saved = {
                **self.header,
                "next_chunk": chunk.index + 1,
                "state": context[0],
                "state_frames": chunk.state.num_frames,
                "vae": context[1],
                "rng": rng,
                "frames_before_chunk": before,
                "chunk_packets": packets,
            }
            if self.saving is not None:
                self.saving.result()  # one checkpoint at a time, in order (re-raises its failure)
            self.saving = self.save_pool.submit(self._save, saved)
        self.seconds["encode"] += encoded - start
        if self.on_chunk is not None:
            chunk.frames = frames
            self.on_chunk(chunk)

    def _save(self, saved: dict) -> None:
        start = time.perf_counter()
        atomic_torch_save(saved, self.checkpoint_at)
        self.seconds["checkpoint"] += time.perf_counter() - start


def _has_compiled_modules(pipe) -> bool:
    modules = [*pipe.transformer.modules(), *pipe.vae.modules()]
    return any(
        getattr(m, "_compiled_call_impl", None) is not None or type(m).__name__ == "OptimizedModule"
        for m in modules
    )


def chunk_prompts(schedule: list[tuple[float, str]], frames: int, fps: float, chunk_frames: int) -> list[str]:
    """A prompt schedule [(seconds, prompt), ...] -> one prompt per chunk.

    A prompt takes effect from the first chunk that starts at or after its time (chunks are not split),
    so a switch is never early; the first entry must be at 0.
    """
    if not schedule or schedule[0][0] != 0:
        raise ValueError("a prompt schedule starts at 0 seconds")
    times = [t for t, _ in schedule]
    if times != sorted(times) or len(set(times)) != len(times):
        raise ValueError(f"prompt schedule times must increase (got {times})")
    latent_frames = (frames - 1) // 4 + 1
    starts, offset = [], 0
    for size in split_chunks(latent_frames, chunk_frames):
        starts.append(0 if offset == 0 else (1 + 4 * (offset - 1)) / fps)  # the chunk's first video frame
        offset += size
    prompts = []
    for start in starts:
        prompts.append([text for t, text in schedule if t <= start + 1e-9][-1])
    return prompts


def partial_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def checkpoint_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.checkpoint.pt")


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)
