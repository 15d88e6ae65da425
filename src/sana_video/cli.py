"""The `sana-video` command. Option parsing and output writing live here; the work lives in the package."""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import sana_video

logger = logging.getLogger("sana_video.cli")

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


class CLIError(Exception):
    """A problem with the user's input: printed as one line, no traceback."""


def _default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 matmuls and convolutions run natively, faster than fp32 (the bundled
    model's VAE decodes 4-5× faster in bf16 on such a CPU). Elsewhere bf16 is emulated and slower."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private: absent in some builds
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


# demo


def _demo(args: argparse.Namespace) -> int:
    """Build a random tiny transformer, run one forward, then the same clip chunk by chunk through the state."""
    import torch

    from sana_video import SanaVideoTransformer3DModel

    torch.manual_seed(args.seed)
    device = torch.device(args.device or _default_device())
    model = SanaVideoTransformer3DModel.from_preset("tiny").to(device).eval()
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    print(
        f"sana-video {sana_video.__version__} demo: a random tiny SANA-Video transformer (no weights are downloaded)"
    )
    print(
        f"model    preset 'tiny': {cfg.num_layers} layers, {cfg.num_attention_heads} heads × {cfg.attention_head_dim}, "
        f"{params:,} parameters, on {device.type}"
    )

    frames, size = args.frames, 16
    latents = torch.randn(1, cfg.in_channels, frames, size, size, device=device)
    text = torch.randn(1, 8, cfg.caption_channels, device=device)
    tokens = frames * (size // cfg.patch_size[1]) * (size // cfg.patch_size[2])
    with torch.no_grad():
        start = time.perf_counter()
        velocity = model(latents, text, timestep=500).sample
        elapsed = (time.perf_counter() - start) * 1e3
    print(
        f"forward  latents {list(latents.shape)} ({frames} latent frames, {tokens} tokens) + text {list(text.shape)} "
        f"at t=500 -> velocity {list(velocity.shape)}, std {velocity.std().item():.3f}, in {elapsed:.1f} ms"
    )

    # Long video: each chunk attends to itself and, through the running state, to all earlier chunks.
    state, sizes = None, []
    with torch.no_grad():
        for first in range(frames):
            out = model(
                latents[:, :, first : first + 1],
                text,
                timestep=500,
                state=state,
                frame_offset=first,
                return_state=True,
            )
            state = out.state
            sizes.append(state.nbytes)
    print(
        f"chunks   the same {frames} frames one chunk at a time, threading a SanaVideoState: "
        f"state size {sizes[0] / 1024:.1f} KiB after chunk 1 and {sizes[-1] / 1024:.1f} KiB after chunk {frames} "
        f"({'constant' if len(set(sizes)) == 1 else 'GROWING'})"
    )
    return 0


# generate


@dataclass
class Job:
    """One pipeline call: a prompt and the videos it makes."""

    prompt: str
    outputs: list[Path]
    seeds: list[int]


def _slug(text: str, length: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower())[:length].strip("-") or "video"


def _free_name(folder: Path, stem: str, taken: set[Path]) -> Path:
    """folder/stem.mp4, or stem-2.mp4, stem-3.mp4, ... : default names never overwrite."""
    candidate, n = folder / f"{stem}.mp4", 1
    while candidate.exists() or candidate in taken:
        n += 1
        candidate = folder / f"{stem}-{n}.mp4"
    taken.add(candidate)
    return candidate


def _read_prompts(args) -> list[tuple[int | None, str]]:
    if args.prompt_file is not None:
        try:
            lines = Path(args.prompt_file).read_text().splitlines()
        except OSError as e:
            raise CLIError(f"cannot read prompt file {args.prompt_file}: {e.strerror or e}") from None
        prompts = [
            (i, line.strip()) for i, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")
        ]
        if not prompts:
            raise CLIError(
                f"prompt file {args.prompt_file} has no prompts (one per line; # starts a comment)"
            )
        if args.prompt or args.prompt_text:
            raise CLIError("give a prompt or --prompt-file, not both")
        return prompts
    prompt = args.prompt or args.prompt_text
    if not prompt or not prompt.strip():
        raise CLIError('no prompt: give one (sana-video generate "a red fox in the snow") or --prompt-file')
    return [(None, prompt.strip())]


def _resolve_defaults(args) -> None:
    """Fill the options not given: from the model folder's sana_video.json (its trained size, length,
    negative prompt, ...), else the command's built-in defaults."""
    import json

    from sana_video.pipelines.text import RECOMMENDED_NEGATIVE_PROMPT
    from sana_video.weights import bundled_model

    if not args.model and (bundled := bundled_model()) is not None:
        args.model = str(bundled)
    model_file = Path(args.model) / "sana_video.json" if args.model else None
    model = json.loads(model_file.read_text()) if model_file is not None and model_file.is_file() else {}
    builtin = {
        "height": 480,
        "width": 832,
        "negative_prompt": RECOMMENDED_NEGATIVE_PROMPT,
        "complex_human_instruction": True,
        **args.builtin_defaults,
    }
    if args.command == "generate":
        builtin["frames"] = 81
    if args.command == "long":  # the distilled LongSANA's: 10-latent-frame chunks, its four-step schedule
        builtin |= {"chunk_frames": 10, "sampler": "few-step"}
    for name, value in builtin.items():
        if getattr(args, name, None) is None:
            setattr(args, name, model.get(name, value))


def _instruction(args) -> list[str] | None:
    """The CHI lines to put before the prompt, or None (--no-chi, or a model trained without them)."""
    from sana_video.pipelines.text import COMPLEX_HUMAN_INSTRUCTION

    return COMPLEX_HUMAN_INSTRUCTION if args.complex_human_instruction else None


def _check_model_and_sizes(args) -> None:
    """The model folder, frames and size (from the folder's configs, before any weights load), the image."""
    from sana_video.pipelines import sizes

    model = Path(args.model) if args.model else None
    if model is None:
        raise CLIError("--model DIR is required (a diffusers-format SANA-Video folder; this copy of sana-video "
                       "has no bundled model)")  # fmt: skip
    if not (model / "model_index.json").is_file():
        raise CLIError(f"--model {model}: not a pipeline folder (no model_index.json there)")
    try:
        temporal, multiple = sizes.folder_geometry(model)
        sizes.check_frames(args.frames, temporal)
        sizes.check_size("--height", args.height, multiple)
        sizes.check_size("--width", args.width, multiple)
    except (OSError, ValueError, KeyError) as e:
        raise CLIError(str(e)) from None
    args.image_pil = _load_image(args.image) if args.image is not None else None


def _plan(args) -> list[Job]:
    """Validate everything that can be checked without loading weights, and name the outputs."""
    _resolve_defaults(args)
    _check_model_and_sizes(args)

    prompts = _read_prompts(args)
    if args.out is not None and (len(prompts) > 1 or args.num_videos > 1):
        raise CLIError("--out names one video; for several use --out-dir")
    folder = Path(args.out).parent if args.out else Path(args.out_dir)
    _check_writable(folder)

    base_seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    jobs, taken, count = [], set(), 0
    for line, prompt in prompts:
        seeds = [base_seed + count + k for k in range(args.num_videos)]
        count += args.num_videos
        if args.out is not None:
            outputs = [Path(args.out)]
        elif line is not None:  # a prompt file: fixed names, so a rerun can skip what exists
            stem = f"{line:03d}-{_slug(prompt)}"
            outputs = [
                folder / (f"{stem}.mp4" if args.num_videos == 1 else f"{stem}-{k + 1}.mp4")
                for k in range(args.num_videos)
            ]
        else:
            outputs = [_free_name(folder, f"{_slug(prompt)}-{seed}", taken) for seed in seeds]
        jobs.append(Job(prompt, outputs, seeds))
    return jobs


def _load_image(path: str):
    import PIL.Image

    try:
        with PIL.Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise CLIError(f"--image {path}: no such file") from None
    except (OSError, ValueError, PIL.UnidentifiedImageError) as e:
        raise CLIError(f"--image {path}: not a readable image ({e.__class__.__name__})") from None


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".sana-video-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise CLIError(f"cannot write to output folder {folder}: {e.strerror or e}") from None


def _parse_lora(spec: str) -> tuple[str, float]:
    path, _, scale = spec.rpartition(":")
    try:
        return (path, float(scale)) if path else (spec, 1.0)
    except ValueError:
        return spec, 1.0  # the colon belonged to the path


class _Stage:
    """Times one stage and prints its one-line summary (unless quiet)."""

    def __init__(self, name: str, quiet: bool, timings: dict[str, float]):
        self.name, self.quiet, self.timings, self.detail = name, quiet, timings, ""

    def __enter__(self) -> _Stage:
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type, *_) -> None:
        seconds = time.perf_counter() - self._start
        self.timings[f"{self.name}_s"] = round(seconds, 3)
        if exc_type is None and not self.quiet:
            print(f"{self.name:8s}{seconds:7.1f} s  {self.detail}".rstrip(), flush=True)


def _load_pipeline(args, cls):
    import torch

    from sana_video.sampling import with_shift

    device = args.device or _default_device()
    if args.dtype == "auto":
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
    else:
        dtype = getattr(torch, DTYPES[args.dtype])
    if args.offload and device != "cuda":
        raise CLIError("--offload moves models between the CPU and a GPU; there is no GPU here")
    if args.fp8 and args.lora:
        raise CLIError("--fp8 with --lora is not supported yet: the adapters' base layers would be quantized")
    # The VAE loads in fp32, as the model card recommends (--vae-dtype may cast it below).
    pipe = cls.from_pretrained(
        args.model, torch_dtype={"transformer": dtype, "text_encoder": dtype, "default": torch.float32}
    )
    if args.shift is not None and args.command == "generate":
        pipe.scheduler = with_shift(pipe.scheduler, args.shift)
    loras = [_parse_lora(spec) for spec in args.lora]
    for i, (path, _) in enumerate(loras):
        if not Path(path).exists():
            raise CLIError(f"--lora {path}: no such file or folder")
        pipe.load_lora_weights(path, adapter_name=f"lora{i}")
    if loras:
        pipe.set_adapters([f"lora{i}" for i in range(len(loras))], [scale for _, scale in loras])
    if args.vae_tiling:
        pipe.vae.enable_tiling()
    if args.fp8 and device != "cuda":
        logger.warning("--fp8 on %s runs an fp32 emulation of the float8 matmuls: slower, not faster", device)
    elif args.fp8 and not args.compile:  # measured on an H200, 2B 480p step: 1.40 s vs 1.04 s bf16
        logger.warning("--fp8 without --compile is slower than bf16 (its activation scaling is not fused)")
    if args.vae_dtype == "auto":  # resolved here so the record says what ran
        args.vae_dtype = "bf16" if device == "cpu" and _cpu_has_native_bf16() else "fp32"
    if args.compile or args.vae_dtype != "fp32" or args.fp8:
        pipe.optimize(
            compile=args.compile,
            vae_dtype=getattr(torch, DTYPES[args.vae_dtype]),
            channels_last=device == "cuda",
            fp8=args.fp8,
        )
    if args.offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=args.quiet, leave=False)
    return pipe, device, dtype


def _generate(args: argparse.Namespace) -> int:
    jobs = _plan(args)
    pending = [job for job in jobs if not all(p.exists() for p in job.outputs)]
    if len(pending) < len(jobs) and not args.quiet:
        print(f"skip     {len(jobs) - len(pending)} of {len(jobs)} prompts: already written")
    if not pending:
        return 0
    timings: dict[str, float] = {}
    from sana_video import SanaImageToVideoPipeline, SanaVideoPipeline

    with _Stage("load", args.quiet, timings) as stage:
        pipe, device, dtype = _load_pipeline(
            args, SanaImageToVideoPipeline if args.image else SanaVideoPipeline
        )
        stage.detail = (
            f"{type(pipe).__name__} from {args.model} ({str(dtype).removeprefix('torch.')} on {device})"
        )
    for job in pending:
        _generate_job(pipe, job, args, dict(timings), device, dtype)
    return 0


def _generate_job(pipe, job: Job, args, timings: dict[str, float], device: str, dtype) -> None:
    import torch

    from sana_video.pipelines.text import motion_prompt
    from sana_video.sampling import flow_shift
    from sana_video.video import export_to_video

    full_prompt = motion_prompt(job.prompt, args.motion_score)
    guided = args.guidance > 1.0
    with _Stage("encode", args.quiet, timings) as stage:
        text, text_mask, negative, negative_mask = pipe.encode_prompt(
            full_prompt,
            guided,
            negative_prompt=args.negative_prompt,
            num_videos_per_prompt=args.num_videos,
            complex_human_instruction=_instruction(args),
        )
        stage.detail = repr(full_prompt if len(full_prompt) < 70 else full_prompt[:67] + "...")
    with _Stage("denoise", args.quiet, timings) as stage:
        latents = pipe(
            **({"image": args.image_pil} if args.image is not None else {}),
            prompt_embeds=text,
            prompt_attention_mask=text_mask,
            negative_prompt=None,
            negative_prompt_embeds=negative,
            negative_prompt_attention_mask=negative_mask,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            height=args.height,
            width=args.width,
            frames=args.frames,
            generator=[torch.Generator().manual_seed(seed) for seed in job.seeds],
            output_type="latent",
            use_resolution_binning=False,
        ).frames
        stage.detail = (
            f"{args.steps} steps, {len(job.seeds)} × {args.frames} frames of {args.height}×{args.width}, "
            f"seed {', '.join(map(str, job.seeds))}"
        )
    with _Stage("decode", args.quiet, timings):
        videos = pipe.decode_latents(latents, output_type="np")
    with _Stage("write", args.quiet, timings) as stage:
        common = {
            "mode": "image-to-video" if args.image is not None else "text-to-video",
            "prompt": job.prompt,
            "full_prompt": full_prompt,
            "steps": args.steps,
            "scheduler": type(pipe.scheduler).__name__,
            "shift": flow_shift(pipe.scheduler),
            **_record(args, dtype, device),
        }
        for path, seed, video in zip(job.outputs, job.seeds, videos):
            export_to_video(video, path, fps=args.fps, metadata={**common, "seed": seed, "timings": timings})
        stage.detail = ", ".join(str(p) for p in job.outputs) + " (+ .json)"


def _record(args, dtype, device: str) -> dict:
    """What every video's JSON sidecar records about the run (beside each command's own fields)."""
    return {
        "negative_prompt": args.negative_prompt if args.guidance > 1 else None,
        "motion_score": args.motion_score,
        "image": str(Path(args.image).resolve()) if args.image else None,
        "generator": "torch.Generator('cpu').manual_seed(seed)",
        "guidance": args.guidance,
        "complex_human_instruction": bool(args.complex_human_instruction),
        "height": args.height,
        "width": args.width,
        "frames": args.frames,
        "fps": args.fps,
        "model": str(Path(args.model).resolve()),
        "lora": args.lora,
        "dtype": str(dtype).removeprefix("torch."),
        "vae_dtype": args.vae_dtype,
        "compiled": args.compile,
        "fp8": args.fp8,
        "device": device,
        "sana_video_version": sana_video.__version__,
        "command": shlex.join(["sana-video", *sys.argv[1:]]),
    }


# long


def _long(args: argparse.Namespace) -> int:
    import math

    from tqdm.auto import tqdm

    from sana_video import LongSanaVideoPipeline
    from sana_video.pipelines.long_video import checkpoint_path, chunk_prompts
    from sana_video.pipelines.text import motion_prompt
    from sana_video.sampling.long import split_chunks

    _resolve_defaults(args)
    if args.duration is not None:  # the first 4k+1 frame count that lasts `duration`
        args.frames = 4 * math.ceil((math.ceil(args.duration * args.fps) - 1) / 4) + 1
    args.frames = 961 if args.frames is None else args.frames
    _check_model_and_sizes(args)
    _check_rollout_length(args)
    text = (args.prompt or args.prompt_text or "").strip()
    if not text:
        raise CLIError('no prompt: give one, or a schedule like "0:a cat walks | 12.5:the cat jumps"')
    try:
        schedule = _parse_schedule(text)
        prompts = chunk_prompts(schedule, args.frames, args.fps, args.chunk_frames)
    except ValueError as e:
        raise CLIError(str(e)) from None
    prompts = [motion_prompt(p, args.motion_score) for p in prompts]

    if args.resume and args.out is None:
        raise CLIError("--resume needs --out: the video whose interrupted run to continue")
    seed = args.seed if args.seed is not None or args.resume else secrets.randbelow(2**31)
    out = (
        Path(args.out) if args.out else _free_name(Path("outputs"), f"{_slug(schedule[0][1])}-{seed}", set())
    )
    _check_writable(out.parent)
    if args.resume and not checkpoint_path(out).exists():
        raise CLIError(f"nothing to resume: no checkpoint {checkpoint_path(out)}")
    if not args.resume and checkpoint_path(out).exists():
        raise CLIError(
            f"{out} has an interrupted run ({checkpoint_path(out).name}): add --resume, or delete it"
        )

    timings: dict[str, float] = {}
    with _Stage("load", args.quiet, timings) as stage:
        pipe, device, dtype = _load_pipeline(args, LongSanaVideoPipeline)
        stage.detail = (
            f"{type(pipe).__name__} from {args.model} ({str(dtype).removeprefix('torch.')} on {device})"
        )
    pipe.set_progress_bar_config(disable=True)
    metadata = {
        "mode": "long",
        "schedule": [[t, p] for t, p in schedule],
        "chunk_prompts": prompts,
        "sampler": args.sampler,
        "steps": args.steps if args.sampler == "euler" else 4,
        "shift": args.shift,
        "chunk_frames": args.chunk_frames,
        **_record(args, dtype, device),
    }
    latent_frames = (args.frames - 1) // 4 + 1
    num_chunks = len(split_chunks(latent_frames, args.chunk_frames))
    bar = tqdm(total=num_chunks, unit="chunk", disable=args.quiet, desc="long", leave=False)
    start = time.perf_counter()

    def on_chunk(chunk):
        done = chunk.first_frame + len(chunk.frames)
        bar.update()
        bar.set_postfix_str(
            f"{done}/{args.frames} frames, {done / (time.perf_counter() - start):.1f} frames/s"
        )

    with _Stage("long", args.quiet, timings) as stage:
        pipe.write(
            out,
            prompts,
            fps=args.fps,
            seed=seed,
            resume=args.resume,
            metadata={**metadata, "timings": timings},
            on_chunk=on_chunk,
            negative_prompt=args.negative_prompt,
            complex_human_instruction=_instruction(args),
            frames=args.frames,
            height=args.height,
            width=args.width,
            chunk_frames=args.chunk_frames,
            sampler=args.sampler,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            shift=args.shift,
            image=args.image_pil,
        )
        bar.close()
        seconds = time.perf_counter() - start
        stage.detail = f"{out} (+ .json): {args.frames} frames, {num_chunks} chunks, {args.frames / seconds:.1f} frames/s"
    return 0


def _parse_schedule(text: str) -> list[tuple[float, str]]:
    """ "0:a cat walks | 12.5:the cat jumps" -> [(0.0, "a cat walks"), (12.5, "the cat jumps")];
    a plain prompt -> [(0.0, prompt)]."""
    parts = [p.strip() for p in text.split("|")]
    if len(parts) == 1 and not re.match(r"^\d+(\.\d+)?\s*:", parts[0]):
        return [(0.0, parts[0])]
    schedule = []
    for part in parts:
        match = re.match(r"^(\d+(?:\.\d+)?)\s*:\s*(.+)$", part)
        if not match:
            raise ValueError(f'prompt schedule entries are "SECONDS:prompt" (got {part!r})')
        schedule.append((float(match.group(1)), match.group(2).strip()))
    return schedule


def _check_rollout_length(args) -> None:
    import json

    config = json.loads((Path(args.model) / "transformer" / "config.json").read_text())
    limit = config.get("rope_max_seq_len", 1024) * config.get("patch_size", (1, 2, 2))[0]
    if (args.frames - 1) // 4 + 1 > limit:
        raise CLIError(
            f"--frames {args.frames} is too long: RoPE positions are absolute, so this model makes at most "
            f"{(limit - 1) * 4 + 1} frames ({limit} latent frames)"
        )


# train


def _train_small(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from sana_video.train.small_model import SmallModelRecipe, build_small_model

    base = SmallModelRecipe()  # the recipe's own training settings, with what the command line changes
    common = dict(num_workers=args.workers, progress=not args.quiet)
    recipe = SmallModelRecipe(
        frames=args.frames,
        size=args.size,
        seed=args.seed,
        cache_clips=args.cache_clips,
        vae=replace(base.vae, steps=args.vae_steps, batch_size=args.vae_batch_size, **common),
        transformer=replace(
            base.transformer,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            stop_after=args.stop_after,
            **common,
        ),
    )
    out = build_small_model(args.out, recipe, device=args.device or _default_device())
    print(f"wrote the small model to {out}")
    return 0


def _train_lora(args: argparse.Namespace) -> int:
    import torch

    from sana_video import SanaVideoPipeline
    from sana_video.train.loop import TrainConfig
    from sana_video.train.lora import VideoFolder, finetune_lora

    if not (Path(args.model) / "model_index.json").is_file():
        raise CLIError(f"--model {args.model}: not a pipeline folder (no model_index.json there)")
    data = VideoFolder(args.data, frames=args.frames, height=args.height, width=args.width)
    device = args.device or _default_device()
    pipe = SanaVideoPipeline.from_pretrained(args.model).to(device)
    pipe.vae.requires_grad_(False)
    if pipe.text_encoder is not None:
        pipe.text_encoder.requires_grad_(False)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=min(50, args.steps // 10),
                         ema_decay=None, checkpoint_every=max(1, args.steps // 4), progress=not args.quiet,
                         bf16=device == "cuda")  # fmt: skip
    torch.manual_seed(0)
    finetune_lora(pipe, data, config, args.out, rank=args.rank)
    print(f"wrote {Path(args.out) / 'pytorch_lora_weights.safetensors'}: use it with --lora")
    return 0


def _whole_number(text: str, minimum: int, rule: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{rule} (got {value})")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1, "must be at least 1")


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0, "must not be negative")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive (got {value})")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative (got {value})")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line, no usage block: `sana-video generate: error: argument --steps: must be at least 1`."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _add_model_options(
    parser: argparse.ArgumentParser, *, guidance: float, motion_score: float, steps: int
) -> None:
    """Options every generating command shares."""

    parser.add_argument("--model", help="a diffusers-format SANA-Video folder (default: the bundled model, "
                                        "where this copy of sana-video has one)")  # fmt: skip
    parser.add_argument("--image", help="first frame: image-to-video")
    parser.add_argument("--negative-prompt", help="(default: the model's, else the SANA-Video model card's)")
    parser.add_argument("--chi", dest="complex_human_instruction", action=argparse.BooleanOptionalAction,
                        help="put the complex human instruction before the prompt, as the official models "
                             "are trained (default: on, unless the model's sana_video.json says otherwise)")  # fmt: skip
    parser.add_argument(
        "--height",
        type=int,
        help="pixels, a multiple of 16 for the 480p model (default: the model's, else 480)",
    )
    parser.add_argument("--width", type=int, help="(default: the model's, else 832)")
    parser.add_argument("--fps", type=_positive_float, default=16, help="of the MP4 (default: 16)")
    parser.add_argument(
        "--steps", type=_positive_int, help=f"denoising steps (default: the model's, else {steps})"
    )
    parser.add_argument("--guidance", type=_non_negative_float,
                        help=f"CFG scale; ≤ 1 is off (default: {guidance:g})")  # fmt: skip
    parser.add_argument("--shift", type=_positive_float, help="flow shift (default: the scheduler's, 8)")
    parser.add_argument("--seed", type=int, help="(default: random; always printed and recorded)")
    parser.add_argument("--motion-score", type=_non_negative_float,
                        help=f"appended to the prompt as ' motion score: N.' (default: {motion_score:g})")  # fmt: skip
    parser.add_argument("--dtype", choices=["auto", *DTYPES], default="auto",
                        help="transformer and text encoder (default: bf16 on CUDA, else fp32; the VAE is fp32)")  # fmt: skip
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument(
        "--offload", action="store_true", help="keep models on the CPU until used (GPU memory)"
    )
    parser.add_argument("--vae-tiling", action="store_true", help="decode in tiles (GPU memory)")
    parser.add_argument("--lora", action="append", default=[], metavar="PATH[:SCALE]",
                        help="a LoRA file or folder (repeatable)")  # fmt: skip
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the transformer blocks and the VAE decoder (faster after warm-up)")  # fmt: skip
    parser.add_argument("--fp8", action="store_true",
                        help="float8 matmuls in the transformer blocks (Hopper/Ada GPUs, with --compile; changes the "
                        "output slightly)")  # fmt: skip
    parser.add_argument("--vae-dtype", choices=["auto", "fp32", "bf16"], default="auto",
                        help="bf16 decodes faster, fp32 is the model card's choice (default: bf16 on a CPU with "
                        "native bf16 (AMX, AVX512-BF16), else fp32)")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.set_defaults(builtin_defaults={"steps": steps, "guidance": guidance, "motion_score": motion_score})


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sana-video", description="SANA-Video text/image-to-video generation.")
    parser.add_argument("--version", action="version", version=f"sana-video {sana_video.__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log the library's choices; show tracebacks"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run a random tiny model once (no weights needed)")
    demo.add_argument("--device", help="cpu, cuda or mps (default: the best available)")
    demo.add_argument("--frames", type=_positive_int, default=5, help="latent frames (default: 5)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)

    gen = commands.add_parser(
        "generate",
        help="text-to-video, or image-to-video with --image",
        description="Generate videos. Writes MP4 (H.264) and a JSON sidecar with everything needed to reproduce it.",
    )
    gen.add_argument("prompt", nargs="?", help="what to show")
    gen.add_argument("--prompt", dest="prompt_text", help="the prompt, as an option")
    gen.add_argument("--prompt-file", help="one prompt per line: one video each, the model loaded once; "
                     "a rerun skips the videos already written")  # fmt: skip
    gen.add_argument("--frames", type=int, help="4k+1 frames (default: the model's, else 81: 5 s at 16 fps)")
    gen.add_argument("--num-videos", type=_positive_int, default=1, help="videos per prompt (default: 1)")
    where = gen.add_mutually_exclusive_group()
    where.add_argument("--out", help="output file (one video)")
    where.add_argument("--out-dir", default="outputs", help="output folder (default: outputs)")
    _add_model_options(gen, guidance=6.0, motion_score=30, steps=50)
    gen.set_defaults(run=_generate)

    long = commands.add_parser(
        "long",
        help="a long video, chunk by chunk at constant memory, resumable",
        description="Generate a long video block by block. The MP4 grows as chunks finish (NAME.partial.mp4, "
        "playable at any time) with a checkpoint after each chunk; --resume continues an interrupted run.",
    )
    long.add_argument("prompt", nargs="?", help='a prompt, or a schedule "0:a cat walks | 12.5:the cat jumps" '
                      "(start times in seconds of video; a prompt starts with the first chunk at or after its time)")  # fmt: skip
    long.add_argument("--prompt", dest="prompt_text", help="the prompt or schedule, as an option")
    length = long.add_mutually_exclusive_group()
    length.add_argument("--frames", type=int, help="4k+1 video frames (default: 961, one minute at 16 fps)")
    length.add_argument(
        "--duration", type=_positive_float, help="seconds of video (rounded up to 4k+1 frames)"
    )
    long.add_argument("--chunk-frames", type=_positive_int,
                      help="latent frames per chunk (default: the model's, else 10 = 40 video frames)")  # fmt: skip
    long.add_argument("--sampler", choices=["few-step", "euler"],
                      help="few-step: the distilled LongSANA schedule; euler: --steps per chunk (default: the "
                      "model's, else few-step)")  # fmt: skip
    long.add_argument("--out", help="output file (default: outputs/<prompt>-<seed>.mp4)")
    long.add_argument("--resume", action="store_true", help="continue the interrupted run of --out")
    _add_model_options(long, guidance=1.0, motion_score=10, steps=50)
    long.set_defaults(run=_long)

    training = commands.add_parser("train", help="train the small model, or a LoRA on your videos")
    what = training.add_subparsers(dest="what", required=True)
    small = what.add_parser("small", help="build the project's small model on synthetic shapes videos")
    small.add_argument("--out", required=True, help="the pipeline folder to write (resumes if interrupted)")
    small.add_argument("--frames", type=_positive_int, default=33)
    small.add_argument("--size", type=_positive_int, default=96, help="height and width (default: 96)")
    small.add_argument("--vae-steps", type=_positive_int, default=1400)
    small.add_argument("--vae-batch-size", type=_positive_int, default=8)
    small.add_argument("--steps", type=_positive_int, default=3600, help="transformer steps (default: 3600)")
    small.add_argument("--batch-size", type=_positive_int, default=128)
    small.add_argument("--lr", type=_positive_float, default=1e-3)
    small.add_argument("--stop-after", type=_positive_int, metavar="STEP",
                       help="end the transformer at this step of its schedule (run again without it to go on)")  # fmt: skip
    small.add_argument("--cache-clips", type=_non_negative_int, default=20_000, metavar="N",
                       help="render and encode N clips once and train on them (0: new clips every batch; "
                       "default: 20000)")  # fmt: skip
    small.add_argument("--workers", type=int, default=8, help="data loader processes (default: 8)")
    small.add_argument("--seed", type=int, default=0)
    small.add_argument("--device", help="(default: the best available)")
    small.add_argument("--quiet", action="store_true")
    small.set_defaults(run=_train_small)
    lora = what.add_parser("lora", help="fine-tune a LoRA on a folder of videos with .txt captions")
    lora.add_argument("--model", required=True, help="the pipeline folder to adapt")
    lora.add_argument("--data", required=True, help="videos, each with a caption in NAME.txt")
    lora.add_argument("--out", required=True, help="where to write the LoRA (and checkpoints)")
    lora.add_argument("--rank", type=_positive_int, default=16)
    lora.add_argument("--steps", type=_positive_int, default=500)
    lora.add_argument("--batch-size", type=_positive_int, default=1)
    lora.add_argument("--lr", type=_positive_float, default=1e-4)
    lora.add_argument("--frames", type=_positive_int, default=33)
    lora.add_argument("--height", type=_positive_int, default=96)
    lora.add_argument("--width", type=_positive_int, default=96)
    lora.add_argument("--device", help="(default: the best available)")
    lora.add_argument("--quiet", action="store_true")
    lora.set_defaults(run=_train_lora)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s"
    )
    if not args.verbose:
        _silence_libraries()
    try:
        return args.run(args)
    except KeyboardInterrupt:
        hint = "; continue with the same command and --resume" if args.command == "long" else ""
        print(f"sana-video: interrupted{hint}", file=sys.stderr)
        return 130
    except (CLIError, ValueError, OSError) as e:
        if args.verbose:
            raise
        print(f"sana-video: error: {e}", file=sys.stderr)
        return 1


def _silence_libraries() -> None:
    """Keep the libraries' loading bars, notices and deprecation warnings out of the command's output."""
    import warnings

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="diffusers|transformers|peft")


if __name__ == "__main__":
    sys.exit(main())
