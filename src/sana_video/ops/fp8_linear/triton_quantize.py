"""`quantize_rows` in one Triton pass: each row is read once, its amax taken in registers, and written
as float8 e4m3 with its fp32 scale.

One program per row holds the whole row (K ≤ MAX_COLUMNS; the block is K rounded up to a power of two).
The math is the reference's, in fp32 and in the same order: s = max(amax, 1e-12) / 448 and
q = round_e4m3(clamp(x / s, ±448)), the division correctly rounded (`div_rn`) and the cast rounding to
nearest even, as torch's; so on the GPU the result is bit for bit the reference's. Compiled, torch's own
version became a looped reduction that reads each row twice (0.46–0.60 ms for [65520, 2240] bf16 on an
H200, under 1 TB/s — benchmarks/probe_hopper.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sana_video.ops.triton_support import INTERPRET, check_interpret_mode, refuse_gradients

FP8 = torch.float8_e4m3fn
MAX_COLUMNS = 16384  # a row in registers: 64 values a thread over 8 warps at most


@triton.jit
def _round_e4m3(x):
    """fp32 x with |x| ≤ 448 rounded to the nearest e4m3 value (ties to even), still fp32. Only for
    Triton's interpreter, whose float8 cast is wrong for values between e4m3 numbers (7.92 gives 4.0);
    it casts e4m3 values exactly. The step is 2^(exponent − 3), at least 2⁻⁹ (the subnormal step)."""
    exponent = ((x.to(tl.uint32, bitcast=True) >> 23) & 0xFF).to(tl.int32) - 127
    step = (tl.maximum(exponent, -6) - 3 + 127).to(tl.uint32) << 23
    step = step.to(tl.float32, bitcast=True)
    magic = 12582912.0  # 1.5 · 2²³: adding and removing it rounds |v| < 2²² to an integer, ties to even
    rounded = ((tl.abs(x) / step + magic) - magic) * step
    return tl.where(x < 0, -rounded, rounded)  # the sign kept: a tiny negative value becomes −0


@triton.jit
def _quantize_rows_kernel(
    x_ptr, q_ptr, s_ptr, columns, stride_row, BLOCK: tl.constexpr, INTERPRETED: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    offsets = tl.arange(0, BLOCK)
    ok = offsets < columns
    x = tl.load(x_ptr + row * stride_row + offsets, mask=ok, other=0.0).to(tl.float32)
    amax = tl.max(tl.abs(x), axis=0)
    scale = tl.div_rn(tl.maximum(amax, 1e-12), 448.0)
    q = tl.clamp(tl.div_rn(x, scale), -448.0, 448.0)
    if INTERPRETED:
        q = _round_e4m3(q)
    tl.store(q_ptr + row * columns + offsets, q.to(tl.float8e4nv), mask=ok)
    tl.store(s_ptr + row, scale)


check_interpret_mode(tl.max)


@torch.library.custom_op("sana_video::quantize_rows_triton", mutates_args=())
def _quantize_rows_op(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows, columns = t.shape
    if t.stride(1) != 1:
        t = t.contiguous()
    q = torch.empty(rows, columns, dtype=FP8, device=t.device)
    scale = torch.empty(rows, 1, dtype=torch.float32, device=t.device)
    if rows:
        block = triton.next_power_of_2(columns)
        warps = 8 if block >= 4096 else 4
        _quantize_rows_kernel[(rows,)](
            t, q, scale, columns, t.stride(0), BLOCK=block, INTERPRETED=INTERPRET, num_warps=warps
        )
    return q, scale


@_quantize_rows_op.register_fake
def _(t):
    return t.new_empty(t.shape, dtype=FP8), t.new_empty(t.shape[0], 1, dtype=torch.float32)


def quantize_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """t [M, K] -> (fp8 [M, K], fp32 scale [M, 1]); what dispatch runs for `quantize_rows`."""
    refuse_gradients("quantize_rows", t)
    return _quantize_rows_op(t)
