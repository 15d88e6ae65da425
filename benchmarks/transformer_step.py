"""Transformer step: ours vs diffusers on the same card, same random weights, same inputs.

    python benchmarks/transformer_step.py                      # 2B-480p, 480×832×81, CFG batch 2, bf16, CUDA
    python benchmarks/transformer_step.py --preset tiny --device cpu --latent 5 16 16 --text-len 8   # smoke

Reports, per case: median step time over --repeats timed runs after warm-up, the memory the step needs
(its model's weights plus the peak allocated from its first call on: activations, a CUDA graph's pool;
before 2026-11-28's fifth session this column was the whole process's peak, other models included), the relative
error of our output against diffusers' (and against diffusers in fp32 with --fp32-check), and, for the
long-video chunk, the size of the state. --modes adds ours with Triton kernels forced (`fused`, or one
of them), compiled, FP8, CUDA graphs, combined with '+' (`compiled+la+fp8`), and diffusers compiled. Ours compiles block by block (`compile_repeated_blocks`, as
`pipe.optimize()`), diffusers as a whole model (`torch.compile`). Prints a table at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import statistics
import time

import torch
import torch._inductor.config
from torch.utils.flop_counter import FlopCounterMode

from sana_video import SanaVideoTransformer3DModel
from sana_video.model.cuda_graphs import CUDAGraphTransformer
from sana_video.model.fp8 import quantize_fp8
from sana_video.model.presets import preset
from sana_video.ops import use_backend


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def memory_mark(device) -> int:
    """Start a peak-memory measurement: the bytes allocated now (peak statistics reset)."""
    if device.type != "cuda":
        return 0
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def model_bytes(model: torch.nn.Module) -> int:
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def timed(
    fn, device, warmup: int, repeats: int, weights: int, mark: int | None = None
) -> tuple[float, float]:
    """Median seconds per call of fn(), and the memory the step needs (GiB, CUDA only): its model's
    `weights` plus the peak allocated above `mark` (from `memory_mark`, by default taken here) —
    activations, a CUDA graph's pool; not the other models and inputs the process holds."""
    if mark is None:
        mark = memory_mark(device)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    if device.type != "cuda":
        return statistics.median(times), float("nan")
    return statistics.median(times), (torch.cuda.max_memory_allocated() - mark + weights) / 2**30


FUSED_OPS = (
    "linear_attention",
    "silu_dwconv_glu",
    "layer_norm_modulate",
    "rms_norm",
)  # ops with a Triton kernel

# A mode is words joined by "+": how the model runs (compiled, fp8) and which backends are forced.
FORCED = {
    "fused": {op: "triton" for op in FUSED_OPS},  # every Triton kernel
    "la": {"linear_attention": "triton"},
    "dwconv": {"silu_dwconv_glu": "triton"},
    "norms": {"layer_norm_modulate": "triton", "rms_norm": "triton"},
    "plain": {"linear_attention": "eager", "silu_dwconv_glu": "eager"},  # PyTorch where Triton is default
}
# Inductor settings a mode's words turn on while it compiles (with "compiled"): GEMMs autotuned against
# Triton templates (Hopper's persistent TMA ones too), pointwise and reduction kernels tuned by coordinate
# descent.
INDUCTOR = {
    "autotune": {
        "max_autotune_gemm": True,
        "max_autotune_gemm_backends": "ATEN,TRITON",
        "triton.enable_persistent_tma_matmul": True,
    },
    "cdt": {"coordinate_descent_tuning": True},
}
MODE_WORDS = ("compiled", "fp8", "graphs", "diffusers-compiled", *FORCED, *INDUCTOR)


def parse_mode(text: str) -> str:
    """argparse type: a mode's words must all be known."""
    unknown = [word for word in text.split("+") if word and word not in MODE_WORDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown mode word(s) {unknown}; use {' '.join(MODE_WORDS)}")
    return text


@contextlib.contextmanager
def fused_kernels(mode: str):
    """Force the backends a mode's words name (FORCED); later words win."""
    with contextlib.ExitStack() as stack:
        for word in mode.split("+"):
            for op, backend in FORCED.get(word, {}).items():
                stack.enter_context(use_backend(op, backend))
            if word in INDUCTOR:
                stack.enter_context(torch._inductor.config.patch(INDUCTOR[word]))
        yield


def rel_err(a, b) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="2b-480p")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--latent", type=int, nargs=3, default=(21, 60, 104), metavar=("F", "H", "W"))
    parser.add_argument("--batch", type=int, default=2, help="2 = a CFG step")
    parser.add_argument("--text-len", type=int, default=300)
    parser.add_argument("--chunk", type=int, default=10, help="latent frames of the long-video chunk case")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=789.0,
                        help="dense bf16 matmul rate for the FLOP floor (789: what an H200 sustains, issue 6)")  # fmt: skip
    parser.add_argument("--fp32-check", action="store_true", help="also compare both bf16 models with fp32")
    parser.add_argument("--modes", nargs="*", default=[], type=parse_mode,
                        help="besides eager, words joined by '+': compiled (torch.compile block by block), fp8 "
                        "(model.fp8), graphs (replayed from a CUDA graph, model.cuda_graphs), fused (every Triton kernel forced), la / dwconv / norms (one Triton "
                        "kernel), plain (PyTorch for the ops whose "
                        "Triton kernel is the CUDA default), autotune / cdt (Inductor's GEMM autotuning / "
                        "coordinate-descent tuning while compiling); or diffusers-compiled")  # fmt: skip
    args = parser.parse_args()

    from diffusers import SanaVideoTransformer3DModel as DiffusersSanaVideo

    device, dtype = torch.device(args.device), torch.bfloat16
    cfg = preset(args.preset)
    torch.manual_seed(0)
    with torch.device(device):
        reference = DiffusersSanaVideo(**cfg).eval()
        ours = SanaVideoTransformer3DModel(**cfg).eval()
    ours.load_state_dict(reference.state_dict())
    gen = torch.Generator(device).manual_seed(0)
    frames, height, width = args.latent
    x = torch.randn(args.batch, cfg["in_channels"], frames, height, width, generator=gen, device=device)
    text = torch.randn(args.batch, args.text_len, cfg["caption_channels"], generator=gen, device=device)
    mask = torch.ones(args.batch, args.text_len, dtype=torch.long, device=device)
    mask[:, args.text_len // 3 :] = 0  # a padded prompt, as from the pipeline
    t = torch.full((args.batch,), 999, device=device)

    rows = []

    def report(*row):
        rows.append(row)
        print(*row, sep=" | ", flush=True)  # as it comes: a run cut short keeps what it measured

    with torch.no_grad():
        truth = None
        if args.fp32_check:
            truth = reference(x, text, t, encoder_attention_mask=mask).sample.float()
        reference.to(dtype)
        # Keep diffusers' RoPE tables fp32, as its from_pretrained(torch_dtype=bf16) does.
        reference.rope.freqs_cos, reference.rope.freqs_sin = (
            reference.rope.freqs_cos.float(),
            reference.rope.freqs_sin.float(),
        )
        ours.to(dtype)
        xb, tb = x.to(dtype), text.to(dtype)

        ref_out = reference(xb, tb, t, encoder_attention_mask=mask).sample
        our_out = ours(xb, tb, t, encoder_attention_mask=mask).sample
        err = rel_err(our_out, ref_out)
        errs32 = (rel_err(our_out, truth), rel_err(ref_out, truth)) if truth is not None else (None, None)
        del our_out, truth

        tokens = frames * height * width // (cfg["patch_size"][1] * cfg["patch_size"][2])
        case = f"{args.preset} {frames}x{height}x{width} ({tokens} tok) B={args.batch}"
        # Matmuls and convs of one step, counted on diffusers' model (the same math; the counter cannot
        # read the out_dtype of our bf16 linear attention's torch.bmm).
        with FlopCounterMode(display=False) as counter:
            reference(xb, tb, t, encoder_attention_mask=mask)
        floor = counter.get_total_flops() / (args.peak_tflops * 1e12)
        print(
            f"{case}: {counter.get_total_flops():.3e} FLOPs, floor {floor * 1e3:.0f} ms at {args.peak_tflops} TFLOP/s"
        )
        sec, peak = timed(lambda: reference(xb, tb, t, encoder_attention_mask=mask), device, args.warmup,
                          args.repeats, model_bytes(reference))  # fmt: skip
        report(case, "diffusers eager", sec, peak, "-")
        sec, peak = timed(lambda: ours(xb, tb, t, encoder_attention_mask=mask), device, args.warmup,
                          args.repeats, model_bytes(ours))  # fmt: skip
        report(case, "ours eager", sec, peak, f"{err:.2e}")
        for mode in args.modes:
            if mode == "diffusers-compiled":  # the whole model compiled, the baseline's usual way
                step = model = torch.compile(reference)
            else:  # a copy: quantize_fp8 and regional compilation (as `pipe.optimize()`) work in place
                model = step = copy.deepcopy(ours) if "fp8" in mode or "compiled" in mode else ours
                if "fp8" in mode:
                    quantize_fp8(model)
                if "compiled" in mode:
                    model.compile_repeated_blocks(fullgraph=True, dynamic=False)
                if "graphs" in mode:  # replayed from a CUDA graph (captured on the first call)
                    step = CUDAGraphTransformer(model)
            with fused_kernels(mode):  # the backends are chosen while tracing, so inside
                mark = memory_mark(device)  # from the first call on (compiling, capturing a graph)
                out = step(xb, tb, t, encoder_attention_mask=mask).sample
                sec, peak = timed(functools.partial(step, xb, tb, t, encoder_attention_mask=mask), device,
                                  args.warmup, args.repeats, model_bytes(model), mark)  # fmt: skip
            report(case, mode if mode.startswith("diffusers") else f"ours {mode}", sec, peak,
                   f"{rel_err(out, ref_out):.2e}")  # fmt: skip
            del out, step, model
            torch._dynamo.reset()

        # Long-video chunk: batch 1, reading a state, producing the next one.
        chunk = min(args.chunk, frames)
        x1, t1, m1 = xb[:1, :, :chunk], t[:1], mask[:1]
        state = ours(x1, tb[:1], t1, encoder_attention_mask=m1, return_state=True).state
        sec, peak = timed(
            lambda: ours(
                x1, tb[:1], t1, encoder_attention_mask=m1, state=state, frame_offset=chunk, return_state=True
            ),
            device,
            args.warmup,
            args.repeats,
            model_bytes(ours),
        )
        report(f"chunk {chunk}x{height}x{width} B=1 +state", "ours eager", sec, peak,
               f"state {state.nbytes / 2**20:.1f} MiB")  # fmt: skip

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    print(f"\ndevice: {name}, torch {torch.__version__}, dtype {dtype}")
    if errs32[0] is not None:
        print(f"rel. error vs diffusers fp32: ours bf16 {errs32[0]:.2e}, diffusers bf16 {errs32[1]:.2e}")
    print(f"FLOP floor of the {args.preset} step: {floor * 1e3:.0f} ms ({args.peak_tflops} TFLOP/s)")
    print(f"{'case':44s} {'impl':24s} {'median s':>9s} {'floor/s':>8s} {'GiB':>9s}  note")
    for case, impl, sec, peak, note in rows:
        share = f"{floor / sec:8.0%}" if case.startswith(args.preset) else " " * 8
        print(f"{case:44s} {impl:24s} {sec:9.3f} {share} {peak:9.1f}  {note}")


if __name__ == "__main__":
    main()
