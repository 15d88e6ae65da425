# ruff: noqa: B023  (every closure here is timed before its loop variables move on)
"""Candidate speed-ups measured in isolation on a GPU, before any goes into the model.

    python benchmarks/probe_hopper.py --parts xattn matmul conv decoder

- xattn: the cross-attention's SDPA at the 2B-480p shape (CFG batch 2, 32,760 video tokens, 20 heads of
  112) over 300 text tokens with a padding bias, against the keys cut to the longest prompt (rounded up),
  per SDPA backend.
- matmul: the block's matmul shapes in bf16, float8 with row-wise scales and float8 with one scale per
  tensor (TFLOP/s), and the compiled per-row activation quantization in front of each.
- conv: the Wan decoder's causal 3×3×3 convs at their 480p shapes (one latent frame a call: new
  frames + 2 cached) as cuDNN's Conv3d and as three 2D convs over the frames, summed; without and
  with cuDNN's autotuner (`torch.backends.cudnn.benchmark`).
- quantize: the float8 row quantization's Triton tilings against compiled torch, then the compiled
  float8 step with the best tiling against torch's quantization.
- decoder: one compiled streaming decode of a 10-latent-frame chunk with diffusers' causal convs and
  with ours (`make_causal_convs_fast`), and the top kernels of the latter.
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch
import torch.nn.functional as F


def timed(fn, repeats=10, warmup=3) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def xattn(rows):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    b, n, h, d, full, valid = 2, 32760, 20, 112, 300, 100
    dev, dt = "cuda", torch.bfloat16
    q = torch.randn(b, h, n, d, device=dev, dtype=dt)
    k = torch.randn(b, h, full, d, device=dev, dtype=dt)
    v = torch.randn(b, h, full, d, device=dev, dtype=dt)
    bias = torch.zeros(b, 1, 1, full, device=dev, dtype=dt)
    bias[..., valid:] = -10000.0
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).float()
    for keys in (300, 128, 112, 100):
        kk, vv, bb = k[:, :, :keys], v[:, :, :keys], bias[..., :keys]
        for name, backend in (
            ("default", None),
            ("cudnn", SDPBackend.CUDNN_ATTENTION),
            ("efficient", SDPBackend.EFFICIENT_ATTENTION),
            ("flash (no mask)", SDPBackend.FLASH_ATTENTION),
        ):
            mask = None if "no mask" in name else bb
            if mask is None and keys != valid:
                continue
            try:
                if backend is None:
                    fn = lambda: F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask)  # noqa: E731
                else:

                    def fn(backend=backend, mask=mask):
                        with sdpa_kernel(backend):
                            return F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask)

                err = ((fn().float() - ref).norm() / ref.norm()).item()
                rows.append(("xattn SDPA", f"{keys} keys, {name}", timed(fn) * 1e3, f"rel err {err:.1e}"))
            except Exception as e:
                rows.append(("xattn SDPA", f"{keys} keys, {name}", float("nan"), str(e)[:60]))


def matmul(rows):
    from sana_video.ops.fp8_linear import quantize_rows

    m = 65520
    quantize = torch.compile(quantize_rows, dynamic=False)
    for k, n, what in (
        (2240, 6720, "q,k,v / temporal taps"),
        (2240, 2240, "attention out"),
        (2240, 11200, "inverted conv"),
        (5600, 2240, "point conv"),
    ):
        flops = 2 * m * k * n
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        sec = timed(lambda: x @ w.t())
        rows.append(("matmul", f"{m}x{k}x{n} bf16 ({what})", sec * 1e3, f"{flops / sec / 1e12:.0f} TFLOP/s"))
        x8, xs = quantize(x)
        w8, ws = quantize_rows(w)
        sec = timed(lambda: torch._scaled_mm(x8, w8.t(), xs, ws.t(), out_dtype=torch.bfloat16))
        rows.append(("matmul", "  fp8 row-wise", sec * 1e3, f"{flops / sec / 1e12:.0f} TFLOP/s"))
        one = torch.ones((), device="cuda")
        sec = timed(lambda: torch._scaled_mm(x8, w8.t(), one, one, out_dtype=torch.bfloat16))
        rows.append(("matmul", "  fp8 per tensor", sec * 1e3, f"{flops / sec / 1e12:.0f} TFLOP/s"))
        sec = timed(lambda: quantize(x))
        rows.append(
            (
                "matmul",
                f"  quantize_rows [{m}, {k}] compiled",
                sec * 1e3,
                f"{m * k * 3 / sec / 1e12:.2f} TB/s",
            )
        )


DECODER_CONVS = [  # Wan2.1 decoder at 480×832, one latent frame a call: (C_in, C_out, frames out, H, W)
    (96, 96, 4, 480, 832),
    (192, 192, 4, 240, 416),
    (192, 384, 2, 120, 208),
    (384, 384, 2, 120, 208),
    (384, 384, 1, 60, 104),
]


def conv(rows):
    for tune in (False, True):
        torch.backends.cudnn.benchmark = tune
        _conv(rows, " (cudnn.benchmark)" if tune else "")
    torch.backends.cudnn.benchmark = False


def _conv(rows, suffix):
    for c_in, c_out, frames, h, w in DECODER_CONVS:
        x = torch.randn(1, c_in, frames + 2, h, w, device="cuda", dtype=torch.bfloat16)
        x = x.to(memory_format=torch.channels_last_3d)
        weight = torch.randn(c_out, c_in, 3, 3, 3, device="cuda", dtype=torch.bfloat16) * 0.05
        weight = weight.to(memory_format=torch.channels_last_3d)
        bias = torch.randn(c_out, device="cuda", dtype=torch.bfloat16)
        flops = 2 * c_in * c_out * 27 * frames * h * w
        ref = F.conv3d(x, weight, bias, padding=(0, 1, 1)).float()
        sec = timed(lambda: F.conv3d(x, weight, bias, padding=(0, 1, 1)))
        shape = f"{c_in}->{c_out} {frames}x{h}x{w}{suffix}"
        rows.append(("decoder conv", f"{shape} Conv3d", sec * 1e3, f"{flops / sec / 1e12:.0f} TFLOP/s"))
        frames2d = x[0].transpose(0, 1)  # [F+2, C, H, W], channels-last: a view

        def sum3():
            out = F.conv2d(frames2d[2:], weight[:, :, 2], bias, padding=1)
            out += F.conv2d(frames2d[1:-1], weight[:, :, 1], padding=1)
            out += F.conv2d(frames2d[:-2], weight[:, :, 0], padding=1)
            return out

        got = sum3().float().transpose(0, 1)[None]
        err = ((got - ref).norm() / ref.norm()).item()
        sec = timed(sum3)
        rows.append(
            (
                "decoder conv",
                f"{shape} 3 Conv2d",
                sec * 1e3,
                f"{flops / sec / 1e12:.0f} TFLOP/s, err {err:.1e}",
            )
        )


def decoder(rows, top):
    from diffusers import AutoencoderKLWan
    from torch.profiler import ProfilerActivity, profile

    from sana_video.pipelines.streaming_vae import (
        StreamingDecoder,
        make_causal_convs_fast,
        make_upsamplers_compilable,
    )

    z = torch.randn(1, 16, 21, 60, 104, device="cuda", dtype=torch.bfloat16)
    outputs = {}
    for fast in (False, True):
        torch.manual_seed(0)
        vae = AutoencoderKLWan().eval().to("cuda", torch.bfloat16)
        for module in vae.modules():
            if isinstance(module, torch.nn.Conv3d):
                module.weight.data = module.weight.data.to(memory_format=torch.channels_last_3d)
        make_upsamplers_compilable(vae.decoder)
        if fast:
            make_causal_convs_fast(vae.decoder)
        torch._dynamo.reset()
        vae.decoder.compile(dynamic=False)
        dec = StreamingDecoder(vae)
        with torch.no_grad():
            dec.decode(z[:, :, :11])
            dec.decode(z[:, :, 11:21])
            torch.cuda.synchronize()
            sec = timed(lambda: dec.decode(z[:, :, 11:21]), repeats=3, warmup=1)
            outputs[fast] = dec.decode(z[:, :, 11:21]).float()
            name = "fast convs" if fast else "diffusers' convs"
            note = ""
            if fast:
                mse = ((outputs[True] - outputs[False]) * 0.5).pow(2).mean().item()
                note = f"PSNR vs diffusers' convs {10 * math.log10(1 / max(mse, 1e-12)):.1f} dB"
            rows.append(("decoder", f"compiled, bf16, 10 latent frames, {name}", sec * 1e3, note))
            print("ROW", rows[-1], flush=True)
            if not fast:
                del vae, dec
                continue
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                dec.decode(z[:, :, 11:21])
                torch.cuda.synchronize()
    events = prof.key_averages()
    total = sum(e.self_device_time_total for e in events)
    print(f"\ndecoder GPU time, 10 latent frames, fast convs: {total / 1e3:.1f} ms")
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[:top]:
        print(
            f"{e.self_device_time_total / 1e3:8.2f} {e.self_device_time_total / total:6.1%} {e.count:6d}  {e.key[:100]}"
        )


def quantize(rows):
    """Sweep the Triton row quantization's tiling at the step's activation shapes, set the best, then
    time the compiled float8 step with it against the compiled torch quantization (same process)."""
    from sana_video import SanaVideoTransformer3DModel
    from sana_video.model.fp8 import quantize_fp8
    from sana_video.model.presets import preset
    from sana_video.ops import use_backend
    from sana_video.ops.fp8_linear import _quantize_rows_torch, triton_quantize

    inputs = [torch.randn(65520, k, device="cuda", dtype=torch.bfloat16) for k in (2240, 5600)]
    compiled = torch.compile(_quantize_rows_torch, dynamic=False)
    base = [timed(lambda: compiled(t)) for t in inputs]
    rows.append(("quantize", "torch compiled, K 2240 | 5600", base[0] * 1e3, f"{base[1] * 1e3:.3f} ms"))
    results = []
    for per_program in (1, 4, 16):
        for chunk in (512, 2048, 8192):
            for warps in (4, 8):
                if per_program * min(chunk, 8192) > 32768:
                    continue
                try:
                    sec = [
                        timed(lambda: triton_quantize.launch(t, per_program, chunk, warps)) for t in inputs
                    ]
                except Exception as e:
                    print("config failed", per_program, chunk, warps, str(e)[:80])
                    continue
                results.append((sum(sec), per_program, chunk, warps, sec))
    results.sort()
    for _total, per_program, chunk, warps, sec in results[:6]:
        gbs = [t.numel() * 3 / s / 1e12 for t, s in zip(inputs, sec)]
        rows.append(("quantize", f"triton rows {per_program} chunk {chunk} warps {warps}", sec[0] * 1e3,
                     f"{sec[1] * 1e3:.3f} ms; {gbs[0]:.2f} | {gbs[1]:.2f} TB/s"))  # fmt: skip
    best = results[0]
    triton_quantize.CONFIG.update(rows=best[1], chunk=best[2], warps=best[3])
    cfg = preset("2b-480p")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = SanaVideoTransformer3DModel(**cfg).eval().to(torch.bfloat16)
    quantize_fp8(model)
    model.compile_repeated_blocks(fullgraph=True, dynamic=False)
    x = torch.randn(2, 16, 21, 60, 104, device="cuda", dtype=torch.bfloat16)
    text = torch.randn(2, 300, 2304, device="cuda", dtype=torch.bfloat16)
    mask = torch.ones(2, 300, dtype=torch.long, device="cuda")
    mask[:, 100:] = 0
    t = torch.full((2,), 999, device="cuda")
    with torch.no_grad():
        for backend in ("torch", "triton"):
            torch._dynamo.reset()
            with use_backend("quantize_rows", backend):
                sec = timed(lambda: model(x, text, t, encoder_attention_mask=mask), repeats=5, warmup=2)
            rows.append(("fp8 step", f"compiled, quantize_rows {backend}", sec * 1e3, ""))
            print("ROW", rows[-1], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", nargs="+", default=["xattn", "matmul", "conv", "decoder"])
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    rows: list = []
    torch.backends.cuda.matmul.allow_tf32 = False
    for part in args.parts:
        done = len(rows)
        try:
            if part == "decoder":
                decoder(rows, args.top)
            else:
                globals()[part](rows)
        except Exception as e:
            rows.append((part, "failed", float("nan"), str(e)[:100]))
        for row in rows[done:]:
            print("ROW", row, flush=True)
    print(f"\n{torch.cuda.get_device_name()}")
    for what, variant, ms, note in rows:
        print(f"{what:14s} {variant:44s} {ms:9.3f} ms  {note}")


if __name__ == "__main__":
    main()
