"""Fused Triton forward (inference) of `linear_attention`, same semantics as `eager.linear_attention`.

Two phases per call, both reading q, k, v in their token layout [B, N, H, d] (any strides with unit
stride over channels, e.g. the views a fused qkv projection gives):

1. state: one program per (b·h, split of the tokens) sums, over its tokens, S = Σ v k̃ᵀ [d_v, d] and
   z = Σ φ(k) [d] in fp32. With several splits each writes its own partial sums and they are added
   in a fixed order afterwards, so the result does not depend on scheduling (no atomics). The
   initial state is folded into split 0.
2. output: a few programs per b·h, each loading the final S and z once and then walking its share
   of the token tiles, writing o = S q̃ / (φ(q)·z + eps) in v's dtype. (One program per tile re-read
   S, 64 KiB of fp32, for every 64 tokens: more bytes than the tile's q.)

RoPE rotates interleaved pairs (x[2i], x[2i+1]); the kernels load a [tokens, d] tile contiguously,
split it in registers into its even and odd channels, rotate them elementwise and keep S as its even
and odd column halves (two tl.dot each), so no de-interleaved or permuted copy of q or k is ever
written. φ, RoPE, the sums
and the division are fp32 whatever the input dtype; only the output is cast.

bf16 inputs take the tensor cores' bf16 path, as `eager` does for bf16 inference: k̃ and q̃ are rounded
to bf16 after RoPE, v is used as it is, S and the numerator are summed in fp32, and S enters the
second product as two bf16 parts (S ≈ S_hi + S_lo, ~16 of its 24 mantissa bits). The denominator
φ(q)·z is a tensor-core product too (φ(q) is exact in bf16; z as high + low parts). fp32 and fp16 inputs
keep fp32 operands (TF32 products, see DOT_PRECISION).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from sana_video.ops.triton_support import INTERPRET, bf16_operand, check_interpret_mode, refuse_gradients
from sana_video.ops.triton_support import multiprocessors as _multiprocessors  # tests stub it

# Tests set this to fill outputs with NaN before each launch, so an element a kernel skips shows up.
POISON_OUTPUTS = False


class Tiling(NamedTuple):
    """How one phase runs: tokens per tile, warps per program, depth of Triton's load pipeline."""

    block_n: int
    num_warps: int
    num_stages: int


# Chosen by benchmarks/ops_step.py --sweep on an H200 (2B model, 480p, batch 2): 128-token tiles, 8
# warps, no load pipelining ran both phases in 1.5 ms; 64-token tiles with 2 stages took 3.7 ms (the
# stages' shared memory leaves fewer programs per SM). fp32 operands are twice the size: 64 tokens.
TILING = {torch.bfloat16: Tiling(128, 8, 1), torch.float16: Tiling(64, 8, 1), torch.float32: Tiling(64, 8, 1)}
MIN_SPLIT_TILES = 8  # a split of phase 1 sums at least this many tiles, so its partial S stays cheap
PROGRAMS_PER_SM = 4  # phase 2 runs about this many programs per SM, each loading S once

# tl.dot operands are fp32 here (φ and RoPE are computed in fp32). On the GPU plain fp32 operands
# would run in TF32 (10-bit mantissa, ~1e-3 relative error), too coarse for fp32 inputs: "tf32x3"
# splits each operand into two TF32 parts and keeps fp32-level accuracy on the tensor cores. With
# half-precision inputs one TF32 product does: its rounding (2⁻¹¹) is below a bf16 output's (2⁻⁹)
# and the same as an fp16 output's, so at most it doubles the error the cast makes anyway.
# The interpreter multiplies in fp32 whatever this says.
DOT_PRECISION = {torch.float32: "tf32x3", torch.float16: "tf32", torch.bfloat16: "tf32"}


@triton.jit
def _load_pairs(
    row_ptrs, n_ok, dim, rstd, w, NORM: tl.constexpr, W_HALF: tl.constexpr, INTERPRETED: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_HALF: tl.constexpr,
):  # fmt: skip
    """φ of a [BLOCK_N, d] tile (rows at row_ptrs, channels contiguous) as its even and odd channels,
    each [BLOCK_N, BLOCK_HALF] fp32. One contiguous (vectorised) load, split into the pairs in registers:
    two stride-2 loads would issue 2-byte accesses. Padding rows and channels load as 0 = φ(0).

    With NORM the tile is first RMS-normalised as `model.layers.RMSNorm` does it: x·rstd (rstd [BLOCK_N],
    each token's 1/RMS over all heads) times this head's weights w [1, 2·BLOCK_HALF], with the module's
    roundings — to a half weight's dtype before and after the product, then to x's dtype."""
    cols = tl.arange(0, 2 * BLOCK_HALF)
    x = tl.load(row_ptrs + cols[None, :], mask=n_ok[:, None] & (cols < dim)[None, :], other=0.0)
    if NORM:
        normed = x.to(tl.float32) * rstd[:, None]
        if W_HALF:  # a product of two half values is exact in fp32: one rounding = the half multiply
            normed = _round_to(normed, w.dtype, INTERPRETED) * w.to(tl.float32)
            normed = _round_to(normed, w.dtype, INTERPRETED)
        else:
            normed = normed * w
        x = _round_to(normed, x.dtype, INTERPRETED)
    x = tl.maximum(x.to(tl.float32), 0.0)
    return tl.split(tl.reshape(x, (BLOCK_N, BLOCK_HALF, 2)))


@triton.jit
def _hi_lo(x, INTERPRETED: tl.constexpr):
    """fp32 x as two bf16 operands x ≈ hi + lo (lo keeps what hi rounds off: ~16 of x's 24 bits)."""
    hi = bf16_operand(x, INTERPRETED)
    return hi, bf16_operand(x - hi.to(tl.float32), INTERPRETED)


@triton.jit
def _split_pair_dot(even, odd, even_hi, even_lo, odd_hi, odd_lo, INTERPRETED: tl.constexpr):
    """[even odd] @ [M_even; M_odd] in fp32, for fp32 tiles even, odd (rounded to bf16 operands here) and
    matrices given as bf16 high + low parts (`_hi_lo`): four tensor-core products, one fp32 sum."""
    even = bf16_operand(even, INTERPRETED)
    odd = bf16_operand(odd, INTERPRETED)
    acc = tl.dot(even, even_hi)
    acc = tl.dot(even, even_lo, acc)
    acc = tl.dot(odd, odd_hi, acc)
    return tl.dot(odd, odd_lo, acc)


@triton.jit
def _round_to(x, dtype: tl.constexpr, INTERPRETED: tl.constexpr):
    """fp32 x rounded to dtype (nearest even), as fp32. (The interpreter's bf16 cast truncates.)"""
    if dtype == tl.bfloat16:
        return bf16_operand(x, INTERPRETED).to(tl.float32)
    return x.to(dtype).to(tl.float32)


@triton.jit
def _norm_inputs(rstd_ptr, w_ptr, b, h, tokens, dim, NORM: tl.constexpr, BLOCK_HALF: tl.constexpr):
    """The pointer to batch b's per-token rstd and head h's norm weights [1, 2·BLOCK_HALF] (padding 0).
    (One return: a compiled jit function may not return from inside a constexpr branch and again after.)"""
    if NORM:
        cols = tl.arange(0, 2 * BLOCK_HALF)
        w = tl.load(w_ptr + h * dim + cols, mask=cols < dim, other=0.0)[None, :]
    else:
        w = 0.0
    return rstd_ptr + b * tokens, w


@triton.jit
def _rotate(even, odd, cos_ptr, sin_ptr, rows, n_ok, pair, BLOCK_HALF: tl.constexpr):
    """RoPE on a tile's channel pairs: each (even, odd) pair of token row n turned by angle table[n, pair].

    The tables come padded to BLOCK_HALF columns (`_rope_tables`), so a row's angles are whole aligned
    vectors: only rows past the end are masked. (Unpadded, the 2B model's 56-column rows gave the
    compiler no alignment, and it loaded the tables 4 bytes at a time: 64 of a state tile's 80 loads a
    thread.) A padding pair's channels are 0, and stay 0 whatever its angle."""
    table = rows * BLOCK_HALF + pair[None, :]
    cos = tl.load(cos_ptr + table, mask=n_ok[:, None], other=0.0)
    sin = tl.load(sin_ptr + table, mask=n_ok[:, None], other=0.0)
    return even * cos - odd * sin, even * sin + odd * cos


def _empty(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    out = torch.empty(shape, dtype=dtype, device=device)
    return out.fill_(float("nan")) if POISON_OUTPUTS else out


@triton.jit
def _state_kernel(
    k_ptr,
    v_ptr,
    cos_ptr,
    sin_ptr,
    kv0_ptr,
    k_sum0_ptr,
    kv_ptr,
    k_sum_ptr,
    k_rstd_ptr,
    k_w_ptr,
    heads,
    dim,
    dim_v,
    tokens,
    split_tokens,
    stride_kb,
    stride_kn,
    stride_kh,
    stride_vb,
    stride_vn,
    stride_vh,
    HAS_ROPE: tl.constexpr,
    HAS_INITIAL: tl.constexpr,
    NORM: tl.constexpr,
    W_HALF: tl.constexpr,
    PRECISION: tl.constexpr,
    BF16_DOTS: tl.constexpr,
    INTERPRETED: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
    BLOCK_DV: tl.constexpr,
):
    bh = tl.program_id(0)
    split = tl.program_id(1)
    b = (bh // heads).to(tl.int64)  # int64: B·N·H·d can pass 2³¹ for long videos
    h = (bh % heads).to(tl.int64)

    pair = tl.arange(0, BLOCK_HALF)  # pair i holds channels 2i (even) and 2i + 1 (odd)
    even_ok = 2 * pair < dim  # without RoPE d may be odd: one more even channel than odd
    odd_ok = 2 * pair + 1 < dim
    cols_v = tl.arange(0, BLOCK_DV)
    v_ok = cols_v < dim_v

    k_base = k_ptr + b * stride_kb + h * stride_kh
    v_base = v_ptr + b * stride_vb + h * stride_vh
    k_rstd, k_w = _norm_inputs(k_rstd_ptr, k_w_ptr, b, h, tokens, dim, NORM, BLOCK_HALF)

    s_even = tl.zeros((BLOCK_DV, BLOCK_HALF), dtype=tl.float32)  # S[:, 0::2]
    s_odd = tl.zeros((BLOCK_DV, BLOCK_HALF), dtype=tl.float32)  # S[:, 1::2]
    z_even = tl.zeros((BLOCK_HALF,), dtype=tl.float32)
    z_odd = tl.zeros((BLOCK_HALF,), dtype=tl.float32)

    start = split * split_tokens
    end = tl.minimum(start + split_tokens, tokens)
    for n0 in range(start, end, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n_ok = n < end
        rows = n.to(tl.int64)[:, None]
        # Padding rows and channels load as 0, and φ(0) = 0 adds nothing to S or z.
        rstd = 0.0
        if NORM:
            rstd = tl.load(k_rstd + n, mask=n_ok, other=0.0)
        k_even, k_odd = _load_pairs(
            k_base + rows * stride_kn, n_ok, dim, rstd, k_w, NORM, W_HALF, INTERPRETED, BLOCK_N, BLOCK_HALF
        )
        z_even += tl.sum(k_even, axis=0)  # z takes φ(k) before RoPE: the denominator is unrotated
        z_odd += tl.sum(k_odd, axis=0)
        if HAS_ROPE:
            k_even, k_odd = _rotate(k_even, k_odd, cos_ptr, sin_ptr, rows, n_ok, pair, BLOCK_HALF)
        # v [tokens, d_v] in the token layout; the dot reads it transposed (no copy in memory).
        v = tl.load(
            v_base + rows * stride_vn + cols_v[None, :], mask=n_ok[:, None] & v_ok[None, :], other=0.0
        )
        if BF16_DOTS:  # bf16 operands, fp32 sums: k̃ rounded after RoPE, as the eager bf16 path
            v_t = tl.trans(v.to(tl.float32) if INTERPRETED else v)
            s_even = tl.dot(v_t, bf16_operand(k_even, INTERPRETED), s_even)
            s_odd = tl.dot(v_t, bf16_operand(k_odd, INTERPRETED), s_odd)
        else:
            v_t = tl.trans(v.to(tl.float32))
            s_even = tl.dot(v_t, k_even, s_even, input_precision=PRECISION)
            s_odd = tl.dot(v_t, k_odd, s_odd, input_precision=PRECISION)

    # S is stored in the state's own layout [d_v, d]: the halves go back to the interleaved columns.
    s_offsets = cols_v[:, None] * dim + 2 * pair[None, :]
    s_even_ok = v_ok[:, None] & even_ok[None, :]
    s_odd_ok = v_ok[:, None] & odd_ok[None, :]
    # Nested on purpose: the constexpr test drops the block at compile time; the inner test is at run time.
    if HAS_INITIAL:  # noqa: SIM102
        if split == 0:  # only split 0 adds the earlier chunks' sums
            kv0 = kv0_ptr + bh.to(tl.int64) * dim_v * dim
            k_sum0 = k_sum0_ptr + bh.to(tl.int64) * dim
            s_even += tl.load(kv0 + s_offsets, mask=s_even_ok, other=0.0)
            s_odd += tl.load(kv0 + s_offsets + 1, mask=s_odd_ok, other=0.0)
            z_even += tl.load(k_sum0 + 2 * pair, mask=even_ok, other=0.0)
            z_odd += tl.load(k_sum0 + 2 * pair + 1, mask=odd_ok, other=0.0)

    slot = split.to(tl.int64) * tl.num_programs(0) + bh  # partial sums are [splits, B·H, ...]
    kv_out = kv_ptr + slot * dim_v * dim
    k_sum_out = k_sum_ptr + slot * dim
    tl.store(kv_out + s_offsets, s_even, mask=s_even_ok)
    tl.store(kv_out + s_offsets + 1, s_odd, mask=s_odd_ok)
    tl.store(k_sum_out + 2 * pair, z_even, mask=even_ok)
    tl.store(k_sum_out + 2 * pair + 1, z_odd, mask=odd_ok)


@triton.jit
def _output_kernel(
    q_ptr,
    cos_ptr,
    sin_ptr,
    kv_ptr,
    k_sum_ptr,
    out_ptr,
    q_rstd_ptr,
    q_w_ptr,
    heads,
    dim,
    dim_v,
    tokens,
    stride_qb,
    stride_qn,
    stride_qh,
    stride_ob,
    stride_on,
    stride_oh,
    eps,
    HAS_ROPE: tl.constexpr,
    NORM: tl.constexpr,
    W_HALF: tl.constexpr,
    PRECISION: tl.constexpr,
    BF16_DOTS: tl.constexpr,
    INTERPRETED: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
    BLOCK_DV: tl.constexpr,
):
    first_tile = tl.program_id(0)
    tile_step = tl.num_programs(0)  # programs per b·h; program p takes tiles p, p + step, ...
    bh = tl.program_id(1)
    b = (bh // heads).to(tl.int64)
    h = (bh % heads).to(tl.int64)

    pair = tl.arange(0, BLOCK_HALF)
    even_ok = 2 * pair < dim
    odd_ok = 2 * pair + 1 < dim
    cols_v = tl.arange(0, BLOCK_DV)
    v_ok = cols_v < dim_v

    # Sᵀ's even and odd row halves [d/2, d_v], read once per program, transposed from the state's
    # [d_v, d] layout, so the numerator is q̃ Sᵀ: [tokens, d/2] @ [d/2, d_v], twice.
    kv = kv_ptr + bh.to(tl.int64) * dim_v * dim
    st_offsets = cols_v[None, :] * dim + 2 * pair[:, None]
    st_even = tl.load(kv + st_offsets, mask=even_ok[:, None] & v_ok[None, :], other=0.0)
    st_odd = tl.load(kv + st_offsets + 1, mask=odd_ok[:, None] & v_ok[None, :], other=0.0)
    if BF16_DOTS:  # S ≈ S_hi + S_lo, both bf16: the low part keeps what the high part rounds off
        st_even_hi, st_even_lo = _hi_lo(st_even, INTERPRETED)
        st_odd_hi, st_odd_lo = _hi_lo(st_odd, INTERPRETED)
    k_sum = k_sum_ptr + bh.to(tl.int64) * dim
    z_even = tl.load(k_sum + 2 * pair, mask=even_ok, other=0.0)
    z_odd = tl.load(k_sum + 2 * pair + 1, mask=odd_ok, other=0.0)
    if BF16_DOTS:
        # The denominator φ(q)·z on the tensor cores too: φ(q) is exact in bf16 (q's own values, or the
        # norm's bf16 rounding of them), z enters as bf16 high + low parts in column 0 of [d/2, 16]
        # matrices (tl.dot's narrowest), the other columns 0. (As a sum of products over the tile's
        # channels it was ~a quarter of the loop's instructions, sm_90 SASS: 1501 → 1140 a tile.)
        z_col = tl.arange(0, 16)[None, :] == 0
        z_even_hi, z_even_lo = _hi_lo(tl.where(z_col, z_even[:, None], 0.0), INTERPRETED)
        z_odd_hi, z_odd_lo = _hi_lo(tl.where(z_col, z_odd[:, None], 0.0), INTERPRETED)

    q_head = q_ptr + b * stride_qb + h * stride_qh
    out_head = out_ptr + b * stride_ob + h * stride_oh
    q_rstd, q_w = _norm_inputs(q_rstd_ptr, q_w_ptr, b, h, tokens, dim, NORM, BLOCK_HALF)
    for tile in range(first_tile, tl.cdiv(tokens, BLOCK_N), tile_step):
        n = tile * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = n < tokens
        rows = n.to(tl.int64)[:, None]
        q_base = q_head + rows * stride_qn
        rstd = 0.0
        if NORM:
            rstd = tl.load(q_rstd + n, mask=n_ok, other=0.0)
        q_even, q_odd = _load_pairs(
            q_base, n_ok, dim, rstd, q_w, NORM, W_HALF, INTERPRETED, BLOCK_N, BLOCK_HALF
        )

        # The denominator uses φ(q) before RoPE: a sum of non-negative products, > 0 unless all vanish.
        if BF16_DOTS:
            denominator = _split_pair_dot(
                q_even, q_odd, z_even_hi, z_even_lo, z_odd_hi, z_odd_lo, INTERPRETED
            )
            denominator = tl.sum(denominator, axis=1) + eps  # column 0 holds it, the rest are 0
        else:
            denominator = (
                tl.sum(q_even * z_even[None, :], axis=1) + tl.sum(q_odd * z_odd[None, :], axis=1) + eps
            )
        if HAS_ROPE:
            q_even, q_odd = _rotate(q_even, q_odd, cos_ptr, sin_ptr, rows, n_ok, pair, BLOCK_HALF)
        if BF16_DOTS:
            numerator = _split_pair_dot(
                q_even, q_odd, st_even_hi, st_even_lo, st_odd_hi, st_odd_lo, INTERPRETED
            )
        else:
            numerator = tl.dot(q_even, st_even, input_precision=PRECISION)
            numerator = tl.dot(q_odd, st_odd, numerator, input_precision=PRECISION)
        out = numerator / denominator[:, None]

        out_ptrs = out_head + rows * stride_on + cols_v[None, :]
        tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=n_ok[:, None] & v_ok[None, :])


check_interpret_mode(_output_kernel)  # all kernels above are defined in the same mode


def _split_tokens(bh: int, tokens: int, block_n: int, device: torch.device) -> int:
    """Tokens per phase-1 program: a multiple of block_n, chosen so B·H·splits programs fill the GPU.

    With B·H = 20 heads and ~132 SMs one program per head would leave most of the GPU idle while it
    reads all of k and v; splitting N gives about two programs per SM. Each split still sums at
    least MIN_SPLIT_TILES tiles, so writing and re-adding its partial S (d_v·d fp32) stays small
    next to the k and v it reads.
    """
    tiles = max(triton.cdiv(tokens, block_n), 1)
    splits = 1
    if device.type == "cuda" and not INTERPRET:
        wanted = triton.cdiv(2 * _multiprocessors(device), bh)
        splits = max(1, min(wanted, tiles // MIN_SPLIT_TILES))
    return triton.cdiv(tiles, splits) * block_n


def _output_programs(bh: int, tiles: int, device: torch.device) -> int:
    """Phase-2 programs per b·h: about PROGRAMS_PER_SM per SM in all, never more than the tiles. Each
    loads S once, so fewer, longer programs read less of it; on the CPU (interpreter) one per tile."""
    if device.type != "cuda" or INTERPRET:
        return max(tiles, 1)
    return max(1, min(tiles, triton.cdiv(PROGRAMS_PER_SM * _multiprocessors(device), bh)))


def _rope_table(table: torch.Tensor, columns: int, device: torch.device) -> torch.Tensor:
    """An angle table [N, d/2] as contiguous fp32 [N, columns], zero-padded: whole aligned rows for the
    kernels' vector loads (`_rotate`)."""
    table = table.to(device, torch.float32)
    return torch.nn.functional.pad(table, (0, columns - table.shape[-1])).contiguous()


def _rstd(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x [B, N, H, d] -> [B, N] fp32: 1/RMS of each token over all its heads' channels, as RMSNorm
    across heads computes it (its mean of squares is the fp32 norm squared over H·d). One read of x, no
    fp32 copy of it."""
    norm = torch.linalg.vector_norm(x.flatten(2), dim=-1, dtype=torch.float32)
    return torch.rsqrt(norm.square() / (x.shape[-2] * x.shape[-1]) + eps).contiguous()


def _channel_strides(x: torch.Tensor) -> torch.Tensor:
    # The kernels address channels with unit stride; any other strides over B, N, H are fine.
    return x if x.stride(-1) == 1 else x.contiguous()


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rope: tuple[torch.Tensor, torch.Tensor] | None,
    initial_state,
    output_final_state: bool,
    eps: float,
    *,
    tiling: Tiling | None = None,
    output_tiling: Tiling | None = None,
    split_tokens: int | None = None,
    output_programs: int | None = None,
    qk_norm=None,
):
    """As `eager.linear_attention`. tiling (both phases, or phase 1 where output_tiling is given),
    split_tokens (a multiple of phase 1's block_n) and output_programs (phase-2 programs per b·h)
    override the defaults, so tests can reach several tiles, splits and tiles per program with few
    tokens, and benchmarks/ops_step.py --sweep can try tilings. qk_norm (q_weight, k_weight, eps): q and
    k are un-normed and get the model's RMSNorm across heads inside the kernels' loads (each token's
    statistic comes from one reduction over q and one over k first), as the dispatch's `QKNorm`."""
    refuse_gradients("linear_attention", q, k, v, *(initial_state or ()))
    batch, tokens, heads, dim = q.shape
    dim_v = v.shape[-1]
    bh = batch * heads
    q, k, v = (_channel_strides(t) for t in (q, k, v))
    device = q.device

    out = _empty((batch, tokens, heads, dim_v), v.dtype, device)
    if bh == 0:  # no (b, h) pair: every tensor is empty, and a grid of 0 programs is refused
        kv = torch.zeros(batch, heads, dim_v, dim, device=device)
        k_sum = torch.zeros(batch, heads, dim, device=device)
        return out, ((kv, k_sum) if output_final_state else None)

    tiling = tiling or TILING.get(q.dtype, TILING[torch.float32])
    output_tiling = output_tiling or tiling
    if split_tokens is None:
        split_tokens = _split_tokens(bh, tokens, tiling.block_n, device)
    elif split_tokens % tiling.block_n:
        raise ValueError(f"split_tokens ({split_tokens}) must be a multiple of block_n ({tiling.block_n})")
    splits = max(triton.cdiv(tokens, split_tokens), 1)

    # tl.dot needs every block dim ≥ 16; padding channels are masked to 0.
    block_half = max(16, triton.next_power_of_2(triton.cdiv(dim, 2)))
    block_dv = max(16, triton.next_power_of_2(dim_v))
    if rope is not None:
        cos, sin = (_rope_table(t, block_half, device) for t in rope)
    else:
        cos = sin = q  # never read (HAS_ROPE is off); any pointer will do
    if initial_state is not None:
        kv0, k_sum0 = (t.to(device, torch.float32).contiguous() for t in initial_state)
    else:
        kv0 = k_sum0 = q  # never read

    precision = DOT_PRECISION.get(q.dtype, "tf32x3")
    bf16_dots = q.dtype == k.dtype == v.dtype == torch.bfloat16

    if qk_norm is not None:
        q_w, k_w, norm_eps = qk_norm
        q_w, k_w = q_w.contiguous(), k_w.contiguous()
        q_rstd, k_rstd = _rstd(q, norm_eps), _rstd(k, norm_eps)
        w_half = q_w.dtype in (torch.float16, torch.bfloat16)
        if k_w.dtype != q_w.dtype:
            raise ValueError(f"the q and k norm weights must share a dtype; got {q_w.dtype} and {k_w.dtype}")
    else:
        q_w = k_w = q_rstd = k_rstd = q  # never read (NORM is off)
        w_half = False

    partial_kv = _empty((splits, batch, heads, dim_v, dim), torch.float32, device)
    partial_k_sum = _empty((splits, batch, heads, dim), torch.float32, device)
    _state_kernel[(bh, splits)](
        k,
        v,
        cos,
        sin,
        kv0,
        k_sum0,
        partial_kv,
        partial_k_sum,
        k_rstd,
        k_w,
        heads,
        dim,
        dim_v,
        tokens,
        split_tokens,
        k.stride(0),
        k.stride(1),
        k.stride(2),
        v.stride(0),
        v.stride(1),
        v.stride(2),
        HAS_ROPE=rope is not None,
        HAS_INITIAL=initial_state is not None,
        NORM=qk_norm is not None,
        W_HALF=w_half,
        PRECISION=precision,
        BF16_DOTS=bf16_dots,
        INTERPRETED=INTERPRET,
        BLOCK_N=tiling.block_n,
        BLOCK_HALF=block_half,
        BLOCK_DV=block_dv,
        num_warps=tiling.num_warps,
        num_stages=tiling.num_stages,
    )
    if splits == 1:
        kv, k_sum = partial_kv[0], partial_k_sum[0]
    else:
        # The second reduction: torch sums the few partials in a fixed order (no atomics), so the
        # state is the same bits on every run.
        kv, k_sum = partial_kv.sum(0), partial_k_sum.sum(0)

    if tokens:
        tiles = triton.cdiv(tokens, output_tiling.block_n)
        programs = output_programs or _output_programs(bh, tiles, device)
        _output_kernel[(min(programs, tiles), bh)](
            q,
            cos,
            sin,
            kv,
            k_sum,
            out,
            q_rstd,
            q_w,
            heads,
            dim,
            dim_v,
            tokens,
            q.stride(0),
            q.stride(1),
            q.stride(2),
            out.stride(0),
            out.stride(1),
            out.stride(2),
            eps,
            HAS_ROPE=rope is not None,
            NORM=qk_norm is not None,
            W_HALF=w_half,
            PRECISION=precision,
            BF16_DOTS=bf16_dots,
            INTERPRETED=INTERPRET,
            BLOCK_N=output_tiling.block_n,
            BLOCK_HALF=block_half,
            BLOCK_DV=block_dv,
            num_warps=output_tiling.num_warps,
            num_stages=output_tiling.num_stages,
        )
    return out, ((kv, k_sum) if output_final_state else None)


# Under torch.compile the kernels are launched through this custom op, which Inductor calls as it is:
# traced into the graph instead (as a user-defined Triton kernel), the output kernel ran 3.4× slower
# inside a compiled 2B step on an H200 (47 ms a step against 13.7 ms uncompiled) with the same inputs.
@torch.library.custom_op("sana_video::linear_attention_triton", mutates_args=())
def _linear_attention_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cos: torch.Tensor | None,
    sin: torch.Tensor | None,
    kv0: torch.Tensor | None,
    k_sum0: torch.Tensor | None,
    eps: float,
    q_norm_weight: torch.Tensor | None,
    k_norm_weight: torch.Tensor | None,
    norm_eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rope = (cos, sin) if cos is not None else None
    initial = (kv0, k_sum0) if kv0 is not None else None
    qk_norm = (q_norm_weight, k_norm_weight, norm_eps) if q_norm_weight is not None else None
    out, (kv, k_sum) = linear_attention(q, k, v, rope, initial, True, eps, qk_norm=qk_norm)
    return out, kv, k_sum


@_linear_attention_op.register_fake
def _(q, k, v, cos, sin, kv0, k_sum0, eps, q_norm_weight, k_norm_weight, norm_eps):
    batch, tokens, heads, dim = q.shape
    dim_v = v.shape[-1]
    return (
        v.new_empty(batch, tokens, heads, dim_v),
        q.new_empty(batch, heads, dim_v, dim, dtype=torch.float32),
        q.new_empty(batch, heads, dim, dtype=torch.float32),
    )


def linear_attention_op(q, k, v, rope, initial_state, output_final_state: bool, eps: float, qk_norm=None):
    """`linear_attention` with the default tiling, as one opaque op (what dispatch runs)."""
    refuse_gradients(
        "linear_attention", q, k, v, *(initial_state or ()), *(qk_norm or ())[:2]
    )  # checked here: inside the op autograd is off
    cos, sin = rope if rope is not None else (None, None)
    kv0, k_sum0 = initial_state if initial_state is not None else (None, None)
    q_w, k_w, norm_eps = qk_norm if qk_norm is not None else (None, None, 0.0)
    out, kv, k_sum = _linear_attention_op(q, k, v, cos, sin, kv0, k_sum0, eps, q_w, k_w, norm_eps)
    return out, ((kv, k_sum) if output_final_state else None)


linear_attention_op.folds_qk_norm = True  # the dispatch hands it un-normed q, k and the norm weights
