"""Fused Triton forward (inference) of `silu_dwconv_glu`: SiLU → 3×3 depthwise conv → u·SiLU(g).

One launch reads z [B, N, 2h] once in its token layout (unit channel stride; batch and token strides
are passed, so views need no copy) and writes out [B, N, h] once. No NCHW copy, no SiLU'd or conv'd
intermediate in memory.

Grid: (images · strips · column blocks, channel blocks), images = B·frames. A program owns

- BLOCK_C consecutive columns of one frame (a column block),
- a strip of `strip_rows` rows of that frame, which it walks top to bottom,
- BLOCK_H channels c of the u half together with the channels c + h of the gate half.

It keeps its tile as [BLOCK_C, BLOCK_H] register blocks, one row at a time. Each input row i is read
as three column-shifted blocks (columns c−1, c, c+1) — one row ahead, so the next row's loads are in
flight while this row's math runs — SiLU'd, and combined with the kernel's three rows of taps into
its contributions to the output rows i+1, i and i−1. Two fp32 accumulators per half carry the output
rows i−1 and i across iterations; after input row i, output row i−1 has all three of its input rows,
gets the gate and is stored. A strip of R rows reads R + 2 input rows (one halo row above and below).

Zero padding: a neighbour outside the frame (row −1 or `rows`, column −1 or `cols`) is a masked load
that gives 0, and SiLU(0) = 0, which is exactly the conv's padding of its SiLU'd input. The column
masks stop a row's last column from reading the next row's first, and rows never leave their frame,
so no neighbour crosses a row end or a frame boundary.

All math is fp32 (SiLU, the 9 taps, the bias, the gate) whatever the input dtype; the output is
cast once, to z's dtype. Under TRITON_INTERPRET=1 the kernel runs on CPU tensors (the tests).

Each input value is SiLU'd three times (once per column tap that reads it), so the SiLUs and the
per-element address and mask arithmetic, not the bytes, bound the kernel (~1.2 TB/s on an H200, a
quarter of its bandwidth). For half inputs on the GPU, SiLU is x/2 + x/2·tanh(x/2) with the hardware's
tanh.approx: one special-function op where x·sigmoid(x) takes two and an exact division; its ~2⁻¹¹
relative error is under a bf16 output's 2⁻⁹. fp32 inputs (and the interpreter, which has no inline
assembly) keep the exact sigmoid. (Tried and dropped: SiLU'ing each input once and shifting columns
by `tl.dot` with 0/1 matrices — slower at every tiling, 2.3 ms against 1.8.)
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sana_video.ops.triton_support import INTERPRET, check_interpret_mode, refuse_gradients
from sana_video.ops.triton_support import multiprocessors as _multiprocessors  # tests stub it

# Tests set this to fill outputs with NaN before each launch, so an element a kernel skips shows up.
POISON_OUTPUTS = False

# Tile defaults, from sweeps on an H200 at the 2B model's 480p shapes (docs/PERFORMANCE.md): [32 columns,
# 16 channels] over 4 warps, 4 values a thread, was fastest (1.8 ms; [32, 64] over 8 warps 2.7 ms). Each
# thread keeps the 18 taps and 2 biases of every channel it holds, besides ~8 live [BLOCK_C, BLOCK_H]
# blocks: with 8 channels a thread ([32, 64], the first default) it needed 255 registers and spilled.
MAX_BLOCK_C = 32  # columns per program
MAX_BLOCK_H = 16  # channels per half per program: 32 bytes (one sector) of a bf16 token
MIN_STRIP_ROWS = 4  # a strip re-reads 2 halo rows; at ≥ 4 rows that is at most 1.5× the reads
PROGRAMS_PER_SM = 4  # rows are split into strips only until about this many programs per SM
NUM_WARPS: int | None = None  # None: 8 for blocks of ≥ 2048 values, else 4


def _empty(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    out = torch.empty(shape, dtype=dtype, device=device)
    return out.fill_(float("nan")) if POISON_OUTPUTS else out


@triton.jit
def _silu(x, FAST: tl.constexpr):
    if FAST:  # x·σ(x) = h + h·tanh(h) with h = x/2: one MUFU op (tanh.approx.f32, sm_75+)
        h = 0.5 * x
        tanh = tl.inline_asm_elementwise(
            "tanh.approx.f32 $0, $1;", "=f,f", [h], dtype=tl.float32, is_pure=True, pack=1
        )
        return h + h * tanh
    return x * tl.sigmoid(x)


@triton.jit
def _tap(w, k, ch_ok):
    return tl.load(w + k, mask=ch_ok, other=0.0).to(tl.float32)[None, :]


@triton.jit
def _taps(w_ptr, ch, ch_ok):
    # The 9 taps of channels ch as [1, BLOCK_H] fp32 rows, in the weight's (kernel row, column) order:
    # [2h, 1, 3, 3] contiguous puts tap (kr, kc) of channel c at c·9 + 3·kr + kc. Loaded once per program.
    w = w_ptr + ch * 9
    return (
        _tap(w, 0, ch_ok),
        _tap(w, 1, ch_ok),
        _tap(w, 2, ch_ok),
        _tap(w, 3, ch_ok),
        _tap(w, 4, ch_ok),
        _tap(w, 5, ch_ok),
        _tap(w, 6, ch_ok),
        _tap(w, 7, ch_ok),
        _tap(w, 8, ch_ok),
    )


@triton.jit
def _load_row(z_row, offsets, stride_n, ok_left, ok_mid, ok_right):
    """One input row of one half as its three column neighbours c − 1, c, c + 1, in z's dtype; a masked
    neighbour loads 0, and SiLU(0) = 0: the conv's zero padding of its (SiLU'd) input."""
    left = tl.load(z_row + offsets - stride_n, mask=ok_left, other=0.0)  # input column c − 1 (kc = 0)
    mid = tl.load(z_row + offsets, mask=ok_mid, other=0.0)
    right = tl.load(z_row + offsets + stride_n, mask=ok_right, other=0.0)  # input column c + 1 (kc = 2)
    return left, mid, right


@triton.jit
def _contributions(left, mid, right, w, FAST: tl.constexpr):
    """One input row i of one half (as loaded by `_load_row`): its share of output rows i+1, i and i−1,
    each [BLOCK_C, BLOCK_H] fp32.

    nn.Conv2d correlates: out[o, c] = Σ w[kr, kc] · in[o + kr − 1, c + kc − 1]. So input row i is kernel
    row 0 for output row i+1, row 1 for output row i and row 2 for output row i−1.
    """
    left = _silu(left.to(tl.float32), FAST)
    mid = _silu(mid.to(tl.float32), FAST)
    right = _silu(right.to(tl.float32), FAST)
    to_next = w[0] * left + w[1] * mid + w[2] * right
    to_same = w[3] * left + w[4] * mid + w[5] * right
    to_prev = w[6] * left + w[7] * mid + w[8] * right
    return to_next, to_same, to_prev


@triton.jit
def _silu_dwconv_glu_kernel(
    z_ptr,
    w_ptr,
    bias_ptr,
    out_ptr,
    frames,
    rows,
    cols,
    hidden,
    stride_zb,
    stride_zn,
    col_blocks,
    strips,
    strip_rows,
    HAS_BIAS: tl.constexpr,
    FAST_SILU: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    # Column blocks vary fastest, then strips: programs launched together share halo rows and columns
    # of the same channels, which are then read from L2.
    pid = tl.program_id(0)
    col_block = pid % col_blocks
    strip = (pid // col_blocks) % strips
    image = pid // (col_blocks * strips)  # b·frames + f
    b = (image // frames).to(tl.int64)  # int64: B·N·2h can pass 2³¹ for long videos
    f = (image % frames).to(tl.int64)

    ch = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)  # u channels; the gate's are ch + hidden
    ch_ok = ch < hidden
    c = col_block * BLOCK_C + tl.arange(0, BLOCK_C)
    # Masks only for columns this program writes (c < cols); a neighbour column outside 0..cols−1 is
    # padding, never the previous or next row's end.
    ok_mid = (c < cols)[:, None] & ch_ok[None, :]
    ok_left = ((c >= 1) & (c < cols))[:, None] & ch_ok[None, :]
    ok_right = (c + 1 < cols)[:, None] & ch_ok[None, :]
    offsets = c[:, None] * stride_zn + ch[None, :]
    out_offsets = c[:, None] * hidden + ch[None, :]

    frame_tokens = rows * cols
    z_frame = z_ptr + b * stride_zb + f * frame_tokens * stride_zn
    out_frame = out_ptr + (b * frames + f) * frame_tokens * hidden  # out is contiguous [B, N, h]

    w_u = _taps(w_ptr, ch, ch_ok)
    w_g = _taps(w_ptr, ch + hidden, ch_ok)
    if HAS_BIAS:
        bias_u = tl.load(bias_ptr + ch, mask=ch_ok, other=0.0).to(tl.float32)[None, :]
        bias_g = tl.load(bias_ptr + hidden + ch, mask=ch_ok, other=0.0).to(tl.float32)[None, :]
    else:
        bias_u = tl.zeros((1, BLOCK_H), dtype=tl.float32)
        bias_g = tl.zeros((1, BLOCK_H), dtype=tl.float32)

    # Before input row i: acc_prev holds output row i−1 (missing its row-below term), acc_cur output
    # row i (missing two terms). The first two rows they start as (r0 − 2, r0 − 1) are never stored.
    acc_prev_u = tl.zeros((BLOCK_C, BLOCK_H), dtype=tl.float32)
    acc_prev_g = tl.zeros((BLOCK_C, BLOCK_H), dtype=tl.float32)
    acc_cur_u = tl.zeros((BLOCK_C, BLOCK_H), dtype=tl.float32)
    acc_cur_g = tl.zeros((BLOCK_C, BLOCK_H), dtype=tl.float32)

    r0 = strip * strip_rows
    r_end = tl.minimum(r0 + strip_rows, rows)
    # Row pointers advance by one row per iteration (64-bit pointer arithmetic, whatever type the loop
    # index has): z_row at input row i, out_row at output row i − 1.
    z_step = cols * stride_zn
    out_step = cols * hidden
    z_row = z_frame + (r0 - 1).to(tl.int64) * z_step
    out_row = out_frame + (r0 - 2).to(tl.int64) * out_step
    # Input row r0 − 1's neighbours; each iteration then loads row i + 1's before it uses row i's, so
    # the next row's loads are in flight while this row's SiLUs and taps run (the loop would otherwise
    # be load, wait, compute: 1.3× slower on an H200). The mask is a block: the interpreter refuses
    # a scalar tensor & a block.
    first_ok = r0 - 1 + tl.zeros((1, BLOCK_H), tl.int32) >= 0
    raw_u = _load_row(z_row, offsets, stride_zn, ok_left & first_ok, ok_mid & first_ok, ok_right & first_ok)
    raw_g = _load_row(
        z_row + hidden, offsets, stride_zn, ok_left & first_ok, ok_mid & first_ok, ok_right & first_ok
    )
    for i in range(r0 - 1, r_end + 1):  # one halo row above and below the strip
        u_left, u_mid, u_right = raw_u
        g_left, g_mid, g_right = raw_g
        next_ok = (i + 1 >= 0) & (i + 1 < rows)  # rows −1 and `rows` are padding
        ok_l, ok_m, ok_r = ok_left & next_ok, ok_mid & next_ok, ok_right & next_ok
        raw_u = _load_row(z_row + z_step, offsets, stride_zn, ok_l, ok_m, ok_r)
        raw_g = _load_row(z_row + z_step + hidden, offsets, stride_zn, ok_l, ok_m, ok_r)
        next_u, same_u, prev_u = _contributions(u_left, u_mid, u_right, w_u, FAST_SILU)
        next_g, same_g, prev_g = _contributions(g_left, g_mid, g_right, w_g, FAST_SILU)
        if i - 1 >= r0:  # output row i − 1 now has all three input rows: gate it and store it once
            u = acc_prev_u + prev_u
            gate = acc_prev_g + prev_g
            out = u * _silu(gate, FAST_SILU)
            tl.store(out_row + out_offsets, out.to(out_ptr.dtype.element_ty), mask=ok_mid)
        acc_prev_u = acc_cur_u + same_u
        acc_prev_g = acc_cur_g + same_g
        acc_cur_u = bias_u + next_u
        acc_cur_g = bias_g + next_g
        z_row += z_step
        out_row += out_step


check_interpret_mode(_silu_dwconv_glu_kernel)  # all kernels above are defined in the same mode


def _strip_rows(programs: int, rows: int, device: torch.device) -> int:
    """Rows per program. Whole frames by default (each row is read once, plus 2 halo rows per frame);
    on a GPU, frames are cut into strips of at least MIN_STRIP_ROWS rows only where the other grid
    axes give fewer than about PROGRAMS_PER_SM programs per SM (one image, narrow frames)."""
    if device.type != "cuda" or INTERPRET:
        return rows
    wanted = triton.cdiv(PROGRAMS_PER_SM * _multiprocessors(device), programs)
    strips = max(1, min(wanted, rows // MIN_STRIP_ROWS))
    return triton.cdiv(rows, strips)


def silu_dwconv_glu(
    z: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    grid: tuple[int, int, int],
    *,
    block_c: int | None = None,
    block_h: int | None = None,
    strip_rows: int | None = None,
    fast_silu: bool | None = None,
    num_warps: int | None = None,
) -> torch.Tensor:
    """As `naive.silu_dwconv_glu` (shapes checked by the caller). block_c, block_h (powers of two) and
    strip_rows override the tiling, so tests reach several column blocks, channel blocks and strips;
    fast_silu overrides the choice of SiLU (default: tanh.approx for half inputs on the GPU);
    num_warps overrides the warps per program (default NUM_WARPS, else by block size)."""
    refuse_gradients("silu_dwconv_glu", z, weight, bias)
    batch, tokens, channels = z.shape
    hidden = channels // 2
    frames, rows, cols = grid
    z = z if z.stride(-1) == 1 else z.contiguous()  # other strides are passed to the kernel
    weight = weight.contiguous()  # [2h, 1, 3, 3]: tap (kr, kc) of channel c at c·9 + 3·kr + kc
    bias_arg = bias.contiguous() if bias is not None else weight  # never read without HAS_BIAS

    if fast_silu is None:
        fast_silu = z.dtype in (torch.float16, torch.bfloat16)
    fast_silu = fast_silu and not INTERPRET  # the interpreter runs no inline assembly

    out = _empty((batch, tokens, hidden), z.dtype, z.device)
    if out.numel() == 0:  # a grid of 0 programs is refused
        return out

    block_c = block_c or min(MAX_BLOCK_C, triton.next_power_of_2(cols))
    block_h = block_h or min(MAX_BLOCK_H, triton.next_power_of_2(hidden))
    col_blocks = triton.cdiv(cols, block_c)
    channel_blocks = triton.cdiv(hidden, block_h)
    images = batch * frames
    if strip_rows is None:
        strip_rows = _strip_rows(images * col_blocks * channel_blocks, rows, z.device)
    strips = triton.cdiv(rows, strip_rows)
    # About 8 fp32 values per thread per block ([16, 64] at 4 warps, [32, 64] at 8), so the ~10 live
    # blocks fit in registers.
    num_warps = num_warps or NUM_WARPS or (8 if block_c * block_h >= 2048 else 4)

    _silu_dwconv_glu_kernel[(images * strips * col_blocks, channel_blocks)](
        z,
        weight,
        bias_arg,
        out,
        frames,
        rows,
        cols,
        hidden,
        z.stride(0),
        z.stride(1),
        col_blocks,
        strips,
        strip_rows,
        HAS_BIAS=bias is not None,
        FAST_SILU=fast_silu,
        BLOCK_C=block_c,
        BLOCK_H=block_h,
        num_warps=num_warps,
    )
    return out


# Under torch.compile the dispatch runs the kernel through this custom op, which Inductor calls as it is
# (as for the linear attention, where tracing the user-defined kernel into the graph made it 3.4× slower).
@torch.library.custom_op("sana_video::silu_dwconv_glu_triton", mutates_args=())
def _silu_dwconv_glu_op(
    z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, frames: int, rows: int, cols: int
) -> torch.Tensor:
    return silu_dwconv_glu(z, weight, bias, (frames, rows, cols))


@_silu_dwconv_glu_op.register_fake
def _(z, weight, bias, frames, rows, cols):
    return z.new_empty(z.shape[0], z.shape[1], z.shape[2] // 2)


def silu_dwconv_glu_op(z, weight, bias, grid):
    """`silu_dwconv_glu` with the default tiling, as one opaque op (what dispatch runs)."""
    refuse_gradients("silu_dwconv_glu", z, weight, bias)  # checked here: inside the op autograd is off
    return _silu_dwconv_glu_op(z, weight, bias, *grid)
