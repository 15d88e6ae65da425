"""Long-video throughput and memory on a GPU: the 2B-480p transformer and the Wan2.1 VAE (random weights).

    python benchmarks/long_video.py --minutes 4          # marks at 1, 2 and 4 minutes of video

1. Components, per chunk of 10 latent frames (40 video frames): the transformer forward reading a state
   (eager, regionally compiled, compiled + float8), and the streaming VAE decode (fp32, bf16, bf16 +
   channels-last 3D, several latent frames a decoder call, compiled), with each decode's PSNR against
   fp32 and its memory above what it started with.
2. End to end: `LongSanaVideoPipeline.write` (few-step sampler: 4 steps + the state pass per chunk,
   H.264 writing and a checkpoint per chunk on the worker thread), transformer compiled (`--fp8`: and in
   float8), VAE in bf16, channels-last and compiled, decoding `--frames-per-call` latent frames a call;
   frames per second and peak GPU memory (allocated: live tensors; reserved: what the caching allocator
   holds from the driver) when 1, 2 and 4 minutes of video are done; `--repeat` runs it again.
Prints a table; `--json PATH` also saves the numbers.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.pipelines.components

from sana_video.model.fp8 import quantize_fp8
from tests.pipelines.components import make_tokenizer


def timed(fn, repeats=5, warmup=1) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def set_vae_format(vae, dtype, channels_last: bool) -> None:
    """dtype, and channels-last 3D memory for the Conv3d weights (the only 5-D tensors)."""
    vae.to(dtype=dtype)
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    for module in vae.modules():
        if isinstance(module, torch.nn.Conv3d):
            module.weight.data = module.weight.data.to(memory_format=layout)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.float() - b.float()) * 0.5).pow(2).mean().item()  # pixels in [-1, 1] -> [0, 1]
    return 10 * math.log10(1 / max(mse, 1e-12))


def build(device):
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler
    from transformers import Gemma2Config, Gemma2Model

    from sana_video import LongSanaVideoPipeline, SanaVideoTransformer3DModel

    torch.manual_seed(0)
    with torch.device(device):
        transformer = SanaVideoTransformer3DModel.from_preset("2b-480p").to(torch.bfloat16).eval()
        vae = AutoencoderKLWan().eval()
        # Text encoding runs once per prompt: a one-layer Gemma-2 of the right width stands in.
        text_encoder = Gemma2Model(
            Gemma2Config(
                hidden_size=2304,
                intermediate_size=512,
                num_hidden_layers=1,
                num_attention_heads=4,
                num_key_value_heads=4,
                head_dim=64,
                vocab_size=64,
            )
        ).eval()
    pipe = LongSanaVideoPipeline(
        make_tokenizer(), text_encoder, vae, transformer, FlowMatchEulerDiscreteScheduler(shift=8.0)
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def components(pipe, device, rows, results, frames_per_call, decode_only=False):
    from sana_video.pipelines.streaming_vae import StreamingDecoder

    transformer = pipe.transformer
    gen = torch.Generator(device).manual_seed(0)
    x = torch.randn(1, 16, 10, 60, 104, generator=gen, device=device, dtype=torch.bfloat16)
    text = torch.randn(1, 300, 2304, generator=gen, device=device, dtype=torch.bfloat16)
    t = torch.full((1,), 960.0, device=device)
    fp8 = None
    if not decode_only:  # the transformer chunk forward
        with torch.no_grad():
            state = transformer(x, text, t, return_state=True).state

            def step():
                transformer(x, text, t, state=state, frame_offset=10)

            eager = timed(step)
            rows.append(("transformer chunk forward (state)", "eager bf16", eager, ""))
            fp8 = copy.deepcopy(transformer)
            results["transformer"] = {"eager_s": eager}
            for name, model in (("compiled blocks", transformer), ("compiled blocks + fp8", fp8)):
                start = time.perf_counter()
                try:
                    if model is fp8:
                        quantize_fp8(fp8)
                    model.compile_repeated_blocks(fullgraph=True, dynamic=False)
                    model(x, text, t, state=state, frame_offset=10)
                except Exception as e:  # report and go on
                    rows.append(
                        ("transformer chunk forward (state)", name, float("nan"), f"failed: {e}"[:80])
                    )
                    fp8 = None
                    continue
                torch.cuda.synchronize()
                compile_s = time.perf_counter() - start
                seconds = timed(lambda model=model: model(x, text, t, state=state, frame_offset=10))
                rows.append(
                    ("transformer chunk forward (state)", name, seconds, f"compile {compile_s:.0f} s")
                )
                print("ROW", rows[-1], flush=True)
                results["transformer"][name] = {"seconds": seconds, "compile_s": compile_s}

    z = torch.randn(1, 16, 21, 60, 104, generator=gen, device=device)
    variants = {}
    reference = None
    for name, dtype, channels_last, compiled, per_call in (
        ("fp32", torch.float32, False, False, 1),
        *(() if decode_only else (
            ("bf16", torch.bfloat16, False, False, 1),
            ("bf16 channels-last", torch.bfloat16, True, False, 1),
            *((f"bf16 channels-last, {n} frames a call", torch.bfloat16, True, False, n) for n in (2, 5, 10)),
        )),
        ("bf16 channels-last compiled", torch.bfloat16, True, True, 1),
        *((f"bf16 channels-last compiled, {n} frames a call", torch.bfloat16, True, True, n)
          for n in frames_per_call if n > 1),
    ):  # fmt: skip
        set_vae_format(pipe.vae, dtype, channels_last)
        compile_s = 0.0
        if compiled:
            try:
                start = time.perf_counter()
                if getattr(pipe.vae.decoder, "_compiled_call_impl", None) is None:
                    compile_decoder(pipe.vae)
                StreamingDecoder(pipe.vae, per_call).decode(z[:, :, :12])
                torch.cuda.synchronize()
                compile_s = time.perf_counter() - start
            except Exception as e:  # report and go on
                rows.append(
                    ("VAE decode 10 latent frames (40 px frames)", name, float("nan"), f"failed: {e}"[:80])
                )
                continue

        def decode(per_call=per_call):
            decoder = StreamingDecoder(pipe.vae, per_call)
            decoder.decode(z[:, :, :11])  # the first chunk, to fill the cache
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            start = time.perf_counter()
            out = decoder.decode(z[:, :, 11:])
            torch.cuda.synchronize()
            decode.peak_gib = (torch.cuda.max_memory_allocated() - before) / 2**30
            return out, time.perf_counter() - start

        decode()
        seconds = []
        for _ in range(3):
            out, s = decode()
            seconds.append(s)
        reference = out if reference is None else reference
        quality = psnr(out, reference) if name != "fp32" else float("inf")
        variants[name] = {
            "seconds": statistics.median(seconds),
            "psnr_vs_fp32": quality,
            "compile_s": compile_s,
            "peak_gib_above": decode.peak_gib,
        }
        note = f"+{decode.peak_gib:.1f} GiB" + (
            "" if name == "fp32" else f", PSNR vs fp32 {quality:.1f} dB (random weights)"
        )
        note += f", compile {compile_s:.0f} s" if compiled else ""
        rows.append(("VAE decode 10 latent frames (40 px frames)", name, statistics.median(seconds), note))
        print("ROW", rows[-1], flush=True)
        del out
    results["decode"] = variants
    return fp8


def compile_decoder(vae) -> None:
    """As `pipe.optimize()` does."""
    from sana_video.pipelines.streaming_vae import make_causal_convs_fast, make_upsamplers_compilable

    make_upsamplers_compilable(vae.decoder)
    make_causal_convs_fast(vae.decoder)
    vae.decoder.compile(dynamic=False)


def warm_up_sequentially(pipe, device) -> None:
    """Compile every graph on this thread before the decode thread starts: FX tracing is process-wide,
    and a compiled function called on one thread while another compiles raises."""
    from sana_video.pipelines.streaming_vae import StreamingDecoder

    with torch.no_grad():
        z = torch.randn(1, 16, 21, 60, 104, device=device, dtype=pipe.vae.dtype)
        decoder = StreamingDecoder(pipe.vae, pipe.vae_frames_per_call)
        decoder.decode(z[:, :, :11])
        decoder.decode(z[:, :, 11:])
        text, mask, *_ = pipe.encode_prompt("a red fox", False, device=device)
        state = None
        for frames, offset in ((11, 0), (10, 11), (10, 21)):
            x = torch.randn(1, 16, frames, 60, 104, device=device)
            t = torch.full((1,), 960.0, device=device)
            pipe.predict(x, t, text, mask, state=state, frame_offset=offset)
            state = pipe.predict(x, torch.zeros(1, device=device), text, mask, state=state, frame_offset=offset,
                                 return_state=True)[1]  # fmt: skip
    torch.cuda.synchronize()


def gpu_timeline(trace_path: Path, chunks: int) -> dict:
    """From a Chrome trace of the profiled chunks: the window's wall time, the time the GPU ran any
    kernel (union over streams), each stream's busy time, and the kernel launches of each CPU thread."""
    events = json.loads(trace_path.read_text())["traceEvents"]
    kernels = [e for e in events if e.get("cat") == "kernel"]
    launches: dict = {}
    for e in events:
        if e.get("cat") == "cuda_runtime" and "Launch" in e.get("name", ""):
            launches[e["tid"]] = launches.get(e["tid"], 0) + 1
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in kernels)
    busy, end = 0.0, None
    for a, b in spans:
        if end is None or a > end:
            busy += b - a
            end = b
        elif b > end:
            busy += b - end
            end = b
    streams: dict = {}
    for e in kernels:
        key = e.get("args", {}).get("stream", "?")
        streams[key] = streams.get(key, 0.0) + e["dur"]
    wall = spans[-1][1] - spans[0][0]
    return {
        "chunks": chunks,
        "wall_s_per_chunk": wall / chunks / 1e6,
        "gpu_busy_s_per_chunk": busy / chunks / 1e6,
        "stream_busy_s_per_chunk": {str(k): v / chunks / 1e6 for k, v in streams.items()},
        "launches_per_thread": {str(k): v for k, v in launches.items()},
    }


def end_to_end(pipe, device, minutes, budget_s, rows, results, label="", trace_chunks=0, trace_dir=None):
    fps = 16
    frames = 4 * math.ceil((minutes * 60 * fps - 1) / 4) + 1
    marks = {m: 4 * math.ceil((m * 60 * fps - 1) / 4) + 1 for m in (1, 2, 4) if m <= minutes}
    out = Path(tempfile.mkdtemp()) / "long.mp4"
    if not label:  # the first run warms up
        if getattr(pipe.vae.decoder, "_compiled_call_impl", None) is not None:
            warm_up_sequentially(pipe, device)
        # Warm up on a short video of three chunks: every compiled variant (the first chunk and later
        # ones, denoising and state passes) and the cuDNN plans.
        pipe.write(out.with_name("warmup.mp4"), "a red fox", frames=4 * 30 + 1, height=480, width=832, seed=1)
    torch.cuda.synchronize()
    # Reserved memory (what the caching allocator holds from the driver: live tensors, their
    # fragmentation, each stream's cached blocks) starts again from the live tensors.
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    seen: dict[int, dict] = {}
    start = time.perf_counter()
    profiler = None
    trace_from = 8  # a chunk well into the run: the pipeline is in its steady state

    class Budget(Exception):
        pass

    def on_chunk(chunk):
        nonlocal profiler
        if trace_chunks and chunk.index == trace_from:  # on the write thread, which also stops it
            profiler = torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            )
            profiler.start()
        elif profiler is not None and chunk.index == trace_from + trace_chunks:
            profiler.stop()
            name = "long_video_trace" + "".join(c if c.isalnum() else "_" for c in label).rstrip("_")
            path = Path(trace_dir or tempfile.mkdtemp()) / f"{name}.json"
            profiler.export_chrome_trace(str(path))
            profiler = None
            results[f"timeline{label}"] = timeline = gpu_timeline(path, trace_chunks)
            print(f"  timeline{label}: {json.dumps(timeline)}", flush=True)
        done = chunk.first_frame + len(chunk.frames)
        elapsed = time.perf_counter() - start
        for minute, mark in marks.items():
            if done >= mark and minute not in seen:
                seen[minute] = {"frames": done, "seconds": elapsed, "fps": done / elapsed,
                                "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
                                "reserved_gib": torch.cuda.max_memory_reserved() / 2**30}  # fmt: skip
                print(f"  {minute} min: {done} frames in {elapsed:.1f} s = {done / elapsed:.1f} frames/s, "
                      f"peak {seen[minute]['peak_gib']:.2f} GiB allocated, "
                      f"{seen[minute]['reserved_gib']:.2f} GiB reserved", flush=True)  # fmt: skip
        if elapsed > budget_s:
            raise Budget

    try:
        pipe.write(out, "a red fox running through fresh snow motion score: 10.", frames=frames, height=480,
                   width=832, seed=0, on_chunk=on_chunk)  # fmt: skip
        finished = True
    except Budget:
        finished = False
    results[f"end_to_end{label}"] = {
        "marks": seen,
        "finished": finished,
        "worker_seconds": getattr(pipe, "last_write_seconds", None),
    }
    for minute, mark in seen.items():
        rows.append((f"end to end{label}, {minute} min of video ({mark['frames']} frames)", "write()", mark["seconds"],
                     f"{mark['fps']:.1f} frames/s, peak {mark['peak_gib']:.2f} GiB allocated, "
                     f"{mark['reserved_gib']:.2f} GiB reserved"))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=4)
    parser.add_argument("--budget", type=float, default=420, help="seconds for the end-to-end run")
    parser.add_argument("--skip-components", action="store_true", help="end to end only")
    parser.add_argument(
        "--decode-only", action="store_true", help="fp32 and the compiled decodes, nothing else"
    )
    parser.add_argument(
        "--fp8", action="store_true", help="end to end with the transformer's blocks in float8"
    )
    parser.add_argument("--frames-per-call", type=int, nargs="+", default=[1],
                        help="VAE decoder calls of this many latent frames: the compiled decoder is timed "
                        "with each, end to end uses the first")  # fmt: skip
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--trace", type=int, default=0, metavar="CHUNKS",
                        help="profile this many chunks from the 8th on: GPU busy time against wall time")  # fmt: skip
    parser.add_argument("--trace-dir", help="where the Chrome trace goes (a temporary folder if unset)")
    parser.add_argument("--no-encode-minutes", type=float, default=0,
                        help="then a run this long that skips H.264 encoding (frames counted, not written): "
                        "what encoding on the write thread costs the pipeline")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1,
                        help="end-to-end runs (the first warms up): the run-to-run spread of speed and memory")  # fmt: skip
    parser.add_argument("--json")
    args = parser.parse_args()
    device = torch.device("cuda")
    pipe = build(device)
    rows, results = [], {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    if args.decode_only:
        components(pipe, device, rows, results, args.frames_per_call, decode_only=True)
        report(rows, results, args.json)
        return
    if not args.skip_components:
        fp8 = components(pipe, device, rows, results, args.frames_per_call)
        if args.fp8 and fp8 is None:
            raise SystemExit("the fp8 transformer failed (above): no end-to-end run")
        if args.fp8:
            pipe.transformer = fp8  # compiled
        del fp8
    elif args.fp8:
        quantize_fp8(pipe.transformer)
    if args.compile and args.skip_components:  # components() compiled it
        pipe.transformer.compile_repeated_blocks(fullgraph=True, dynamic=False)
    # End to end: bf16 channels-last VAE, compiled with the transformer (as `pipe.optimize()`).
    set_vae_format(pipe.vae, torch.bfloat16, True)
    if args.compile and getattr(pipe.vae.decoder, "_compiled_call_impl", None) is None:
        compile_decoder(pipe.vae)
    pipe.vae_frames_per_call = args.frames_per_call[0]
    best = (
        f"bf16 channels-last{' compiled' if args.compile else ''}, {pipe.vae_frames_per_call} frames a call"
    )

    compiled = not args.skip_components or args.compile
    transformer = ("compiled blocks" if compiled else "eager") + (" + fp8" if args.fp8 else "")
    results["settings"] = {"vae": best, "transformer": transformer}
    print(f"end to end with VAE {best}, transformer {results['settings']['transformer']}", flush=True)
    try:
        end_to_end(pipe, device, args.minutes, args.budget, rows, results, "", args.trace, args.trace_dir)
        for run in range(2, args.repeat + 1):
            end_to_end(pipe, device, args.minutes, args.budget, rows, results, f" (run {run})")
        if args.no_encode_minutes:
            from sana_video.video import ChunkedVideoWriter

            def count_only(self, frames):
                self.frames_written += len(frames)
                return []

            ChunkedVideoWriter.write_chunk = count_only
            end_to_end(pipe, device, args.no_encode_minutes, args.budget, rows, results, " (no encoding)",
                       args.trace, args.trace_dir)  # fmt: skip
    except Exception as e:  # keep what was measured
        rows.append(("end to end", "FAILED", float("nan"), f"{type(e).__name__}: {e}"[:120]))
    report(rows, results, args.json)


def report(rows, results, json_path) -> None:
    print(f"\ndevice: {results['device']}, torch {results['torch']}")
    print(f"{'what':50s} {'how':20s} {'seconds':>8s}  note")
    for what, how, seconds, note in rows:
        print(f"{what:50s} {how:20s} {seconds:8.3f}  {note}")
    for key, value in results.items():
        if key.startswith("end_to_end") and value.get("worker_seconds"):
            print(
                f"worker thread totals{key[10:]} (s):",
                {k: round(v, 1) for k, v in value["worker_seconds"].items()},
            )
        if key.startswith("timeline"):
            print(f"{key}: {json.dumps(value)}")
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
