"""`quantize_rows` in Triton: each row's amax, its scale and its float8 e4m3 values in one launch.

A program owns ROWS rows. When a row fits one block of CHUNK columns it is read once and kept in
registers; otherwise a first loop takes the amax and a second reads the row again (from L2, the row
was just read) to quantize it. The math is the reference's, in fp32 and in the same order:
s = max(amax, 1e-12) · fp32(1/448) and q = round_e4m3(clamp(x / s, ±448)), the division correctly
rounded (`div_rn`) and the rounding to e4m3 to nearest even (by hand, `_round_e4m3`): bit for bit the
reference's. Compiled, torch's own version became a looped reduction reading each row twice (0.46–0.60 ms
for [65520, 2240] bf16 on an H200, under 1 TB/s — benchmarks/probe_hopper.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sana_video.ops.triton_support import check_interpret_mode, refuse_gradients

FP8 = torch.float8_e4m3fn
MAX_COLUMNS = 1 << 20
# (rows a program, columns a block, warps); a row of up to CHUNK columns is read once
CONFIG = {"rows": 16, "chunk": 512, "warps": 8}


@triton.jit
def _round_e4m3(x):
    """fp32 x with |x| ≤ 448 rounded to the nearest e4m3 value (ties to even), still fp32; the step is
    2^(exponent − 3), at least 2⁻⁹ (the subnormal step). Done by hand because Triton's own float8 cast
    is not the single round-to-nearest of torch's everywhere: its interpreter turns 7.92 into 4.0, and a
    conversion through fp16 would round twice. Every path casts e4m3 values exactly."""
    exponent = ((x.to(tl.uint32, bitcast=True) >> 23) & 0xFF).to(tl.int32) - 127
    step_exponent = tl.maximum(exponent, -6) - 3
    step = ((step_exponent + 127).to(tl.uint32) << 23).to(tl.float32, bitcast=True)
    inverse = ((127 - step_exponent).to(tl.uint32) << 23).to(tl.float32, bitcast=True)  # exact powers of 2
    magic = 12582912.0  # 1.5 · 2²³: adding and removing it rounds |v| < 2²² to an integer, ties to even
    rounded = ((tl.abs(x) * inverse + magic) - magic) * step
    # x's sign bit put back on the bits (a tiny negative value becomes −0, as torch's cast gives; a
    # select between −r and r lost that sign once compiled for the GPU)
    sign = x.to(tl.uint32, bitcast=True) & 0x80000000
    return (rounded.to(tl.uint32, bitcast=True) | sign).to(tl.float32, bitcast=True)


@triton.jit
def _quantize(x, scale):
    q = _round_e4m3(tl.clamp(tl.div_rn(x, scale), -448.0, 448.0))
    return q.to(tl.float8e4nv)  # exact: q is an e4m3 value


@triton.jit
def _quantize_rows_kernel(
    x_ptr, q_ptr, s_ptr, rows, columns, stride_row, ROWS: tl.constexpr, CHUNK: tl.constexpr,
    ONE_BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    row_ok = row < rows
    x_rows = x_ptr + row[:, None] * stride_row
    q_rows = q_ptr + row[:, None] * columns
    offsets = tl.arange(0, CHUNK)[None, :]
    if ONE_BLOCK:
        ok = row_ok[:, None] & (offsets < columns)
        x = tl.load(x_rows + offsets, mask=ok, other=0.0).to(tl.float32)
        scale = tl.maximum(tl.max(tl.abs(x), axis=1), 1e-12) * (1.0 / 448.0)
        tl.store(q_rows + offsets, _quantize(x, scale[:, None]), mask=ok)
    else:
        amax = tl.zeros([ROWS], dtype=tl.float32)
        for start in range(0, columns, CHUNK):
            ok = row_ok[:, None] & (start + offsets < columns)
            x = tl.load(x_rows + start + offsets, mask=ok, other=0.0).to(tl.float32)
            amax = tl.maximum(amax, tl.max(tl.abs(x), axis=1))
        scale = tl.maximum(amax, 1e-12) * (1.0 / 448.0)
        for start in range(0, columns, CHUNK):
            ok = row_ok[:, None] & (start + offsets < columns)
            x = tl.load(x_rows + start + offsets, mask=ok, other=0.0).to(tl.float32)
            tl.store(q_rows + start + offsets, _quantize(x, scale[:, None]), mask=ok)
    tl.store(s_ptr + row, scale, mask=row_ok)


check_interpret_mode(tl.max)


def launch(t: torch.Tensor, rows_per_program: int, chunk: int, warps: int):
    """Quantize t [M, K] (unit column stride) with one tiling; returns (fp8 [M, K], fp32 [M, 1])."""
    rows, columns = t.shape
    q = torch.empty(rows, columns, dtype=FP8, device=t.device)
    scale = torch.empty(rows, 1, dtype=torch.float32, device=t.device)
    if rows and columns:
        one_block = columns <= chunk
        chunk = triton.next_power_of_2(columns) if one_block else chunk
        grid = (triton.cdiv(rows, rows_per_program),)
        _quantize_rows_kernel[grid](
            t, q, scale, rows, columns, t.stride(0), ROWS=rows_per_program, CHUNK=chunk,
            ONE_BLOCK=one_block, num_warps=warps,
        )  # fmt: skip
    return q, scale


@torch.library.custom_op("sana_video::quantize_rows_triton", mutates_args=())
def _quantize_rows_op(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if t.stride(1) != 1:
        t = t.contiguous()
    return launch(t, CONFIG["rows"], CONFIG["chunk"], CONFIG["warps"])


@_quantize_rows_op.register_fake
def _(t):
    return t.new_empty(t.shape, dtype=FP8), t.new_empty(t.shape[0], 1, dtype=torch.float32)


def quantize_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """t [M, K] -> (fp8 [M, K], fp32 scale [M, 1]); what dispatch runs for `quantize_rows`."""
    refuse_gradients("quantize_rows", t)
    return _quantize_rows_op(t)
