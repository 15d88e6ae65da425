"""Triton kernels (forward only) for `layer_norm_modulate`, `rms_norm` and `glu_gate`.

Each norm runs one program per row with the whole row in registers (BLOCK_D = next power of two of
D, masked), so a row is read once and written once; statistics and math are fp32. The gate is
elementwise and tiles rows × column blocks. Under TRITON_INTERPRET=1 the kernels run on CPU tensors.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sana_video.ops.triton_support import INTERPRET as INTERPRET  # read by the tests
from sana_video.ops.triton_support import check_interpret_mode, refuse_gradients

# Tests set this to fill outputs with NaN before each launch, so an element a kernel skips shows up.
POISON_OUTPUTS = False

_GATE_BLOCK = 1024  # columns per program for the elementwise gate


def _empty(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    out = torch.empty(shape, dtype=dtype, device=device)
    return out.fill_(float("nan")) if POISON_OUTPUTS else out


def _num_warps(block: int) -> int:
    # About 16 fp32 values per thread; more warps only add shared-memory traffic in the reductions.
    return min(max(block // 512, 1), 16)


@triton.jit
def _layer_norm_modulate_kernel(
    x_ptr,
    shift_ptr,
    scale_ptr,
    out_ptr,
    tokens,
    dim,
    shift_stride_b,
    shift_stride_n,
    scale_stride_b,
    scale_stride_n,
    eps,
    BLOCK_D: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)  # int64: B·N·D can pass 2³¹ for long videos
    b = row // tokens
    n = row % tokens
    cols = tl.arange(0, BLOCK_D)
    mask = cols < dim
    x = tl.load(x_ptr + row * dim + cols, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / dim
    centered = tl.where(mask, x - mean, 0.0)  # padding lanes would add mean² each to the variance
    var = tl.sum(centered * centered, axis=0) / dim
    y = centered * tl.rsqrt(var + eps)
    # Per-sample modulation has stride 0 over N, so both layouts are the same loads.
    shift = tl.load(shift_ptr + b * shift_stride_b + n * shift_stride_n + cols, mask=mask, other=0.0)
    scale = tl.load(scale_ptr + b * scale_stride_b + n * scale_stride_n + cols, mask=mask, other=0.0)
    y = y * (1.0 + scale.to(tl.float32)) + shift.to(tl.float32)
    tl.store(out_ptr + row * dim + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rms_norm_kernel(x_ptr, w_ptr, out_ptr, dim, eps, ROUND_TO_W: tl.constexpr, BLOCK_D: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < dim
    x = tl.load(x_ptr + row * dim + cols, mask=mask, other=0.0).to(tl.float32)
    normed = x * tl.rsqrt(tl.sum(x * x, axis=0) / dim + eps)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0)
    if ROUND_TO_W:
        # The module rounds to the half weight's dtype, then multiplies in it. A product of two
        # half values is exact in fp32, so one rounding of it equals the half-precision multiply.
        normed = normed.to(w.dtype).to(tl.float32)
        y = (normed * w.to(tl.float32)).to(w.dtype)
    else:
        y = normed * w.to(tl.float32)
    tl.store(out_ptr + row * dim + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _glu_gate_kernel(y_ptr, out_ptr, hidden, SILU_INPUT: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < hidden
    u = tl.load(y_ptr + row * 2 * hidden + cols, mask=mask, other=0.0).to(tl.float32)
    gate = tl.load(y_ptr + row * 2 * hidden + hidden + cols, mask=mask, other=0.0).to(tl.float32)
    if SILU_INPUT:
        u = u * tl.sigmoid(u)
        gate = gate * tl.sigmoid(gate)
    out = u * gate * tl.sigmoid(gate)
    tl.store(out_ptr + row * hidden + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


check_interpret_mode(_glu_gate_kernel)  # all kernels above are defined in the same mode


def layer_norm_modulate(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    batch, tokens, dim = x.shape
    x = x.contiguous()
    # expand() gives per-sample tables stride 0 over N without a copy; the kernel needs unit stride
    # over D only, so the non-contiguous views that unbind() makes of the modulation table are fine.
    shift, scale = (t.expand(batch, tokens, dim) for t in (shift, scale))
    shift, scale = (t if t.stride(-1) == 1 else t.contiguous() for t in (shift, scale))
    out = _empty(x.shape, x.dtype, x.device)
    if x.numel() == 0:
        return out
    block = triton.next_power_of_2(dim)
    _layer_norm_modulate_kernel[(batch * tokens,)](
        x,
        shift,
        scale,
        out,
        tokens,
        dim,
        shift.stride(0),
        shift.stride(1),
        scale.stride(0),
        scale.stride(1),
        eps,
        BLOCK_D=block,
        num_warps=_num_warps(block),
    )
    return out


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    dim = x.shape[-1]
    x = x.contiguous()
    weight = weight.contiguous()
    out = _empty(x.shape, x.dtype, x.device)
    if x.numel() == 0:
        return out
    block = triton.next_power_of_2(dim)
    round_to_w = weight.dtype in (torch.float16, torch.bfloat16)
    _rms_norm_kernel[(x.numel() // dim,)](
        x, weight, out, dim, eps, ROUND_TO_W=round_to_w, BLOCK_D=block, num_warps=_num_warps(block)
    )
    return out


def glu_gate(y: torch.Tensor, silu_input: bool = False) -> torch.Tensor:
    hidden = y.shape[-1] // 2
    y = y.contiguous()
    out = _empty((*y.shape[:-1], hidden), y.dtype, y.device)
    if out.numel() == 0:
        return out
    block = min(_GATE_BLOCK, triton.next_power_of_2(hidden))
    grid = (out.numel() // hidden, triton.cdiv(hidden, block))
    _glu_gate_kernel[grid](y, out, hidden, SILU_INPUT=silu_input, BLOCK=block, num_warps=4)
    return out


# What dispatch runs: the kernels as opaque custom ops, which torch.compile calls as they are (traced into
# the graph as user-defined Triton kernels, the linear attention's ran 3.4× slower; docs/PERFORMANCE.md).
@torch.library.custom_op("sana_video::layer_norm_modulate_triton", mutates_args=())
def _layer_norm_modulate_op(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float
) -> torch.Tensor:
    return layer_norm_modulate(x, shift, scale, eps)


@_layer_norm_modulate_op.register_fake
def _(x, shift, scale, eps):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op("sana_video::rms_norm_triton", mutates_args=())
def _rms_norm_op(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return rms_norm(x, weight, eps)


@_rms_norm_op.register_fake
def _(x, weight, eps):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def layer_norm_modulate_op(x, shift, scale, eps: float = 1e-6):
    """`layer_norm_modulate` as one opaque op."""
    refuse_gradients("layer_norm_modulate", x, shift, scale)  # inside the op autograd is off
    return _layer_norm_modulate_op(x, shift, scale, eps)


def rms_norm_op(x, weight, eps: float = 1e-5):
    """`rms_norm` as one opaque op."""
    refuse_gradients("rms_norm", x, weight)
    return _rms_norm_op(x, weight, eps)
