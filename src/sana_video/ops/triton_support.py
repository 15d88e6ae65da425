"""What every Triton kernel module here shares: the interpreter flag, its import-time check, the SM count."""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

# triton.jit decides between compiling and interpreting when a kernel is defined, i.e. at import.
try:
    INTERPRET: bool = bool(triton.knobs.runtime.interpret)
except AttributeError:  # triton before 3.4 has no knobs
    INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def bf16_operand(x, INTERPRETED: tl.constexpr):
    """fp32 x rounded to nearest bf16 for tl.dot. Triton's interpreter has no bf16 arithmetic (its dot
    multiplies the raw bits, its cast truncates), so there the rounding is done on the bits (round half
    to even, as the GPU's cast) and the value stays fp32, where products of bf16 values are exact."""
    if INTERPRETED:
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.to(tl.float32, bitcast=True)
    return x.to(tl.bfloat16)


def refuse_gradients(op: str, *tensors) -> None:
    """The Triton kernels are forward only. Reached only where a caller forces one: dispatch picks eager
    where gradients are needed."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise RuntimeError(f"the triton {op} is forward only; use the eager backend for autograd")


def check_interpret_mode(kernel) -> None:
    """Triton's own library (tl.sum, tl.sigmoid, ...) was defined in the mode of triton's first import;
    kernels defined in the other mode cannot call it. Raise ImportError then, so the importing kernel
    module fails and its op falls back to the reference."""
    if type(kernel) is not type(tl.sum):
        raise ImportError(
            "TRITON_INTERPRET changed after triton was first imported; set it before Python starts "
            "(e.g. TRITON_INTERPRET=1 pytest ...)"
        )


@functools.cache
def multiprocessors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count
