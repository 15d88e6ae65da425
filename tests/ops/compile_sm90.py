"""Compile every Triton kernel for Hopper (sm_90) on a machine without a GPU.

    TRITON_INTERPRET=0 python tests/ops/compile_sm90.py

Triton's interpreter (what the CPU tests run) executes a kernel's Python, so it accepts code the compiler
refuses — e.g. a jit function returning from inside a constexpr branch and again after it, which cost a
GPU run once. This builds each kernel in each variant the wrappers launch (the constexpr flags that
change its code, the pointer dtypes the model uses) through Triton's real pipeline, down to ptxas and a
cubin. Exits non-zero with the first compiler error.
"""

from __future__ import annotations

import inspect
import itertools
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from sana_video.ops.linear_attention import triton_kernel as linear_attention
from sana_video.ops.mixffn_conv import triton_kernel as mixffn_conv
from sana_video.ops.norms import triton_kernels as norms

TARGET = GPUTarget("cuda", 90, 32)  # H100 / H200


def build(kernel, constexprs: dict, pointers: dict[str, str], num_warps: int = 4) -> None:
    """Compile `kernel` with these constexpr values; pointer arguments get the dtypes in `pointers`
    (default bf16), `eps` is fp32 and every other argument i32."""
    names = list(inspect.signature(kernel.fn).parameters)
    signature = {}
    for name in names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = pointers.get(name, "*bf16")
        else:
            signature[name] = "fp32" if name == "eps" else "i32"
    source = ASTSource(kernel, signature, constexprs={(names.index(k),): v for k, v in constexprs.items()})
    triton.compile(source, target=TARGET, options={"num_warps": num_warps})


def linear_attention_variants():
    fp32 = {name: "*fp32" for name in ("cos_ptr", "sin_ptr", "kv0_ptr", "k_sum0_ptr", "kv_ptr", "k_sum_ptr",
                                       "k_rstd_ptr", "q_rstd_ptr")}  # fmt: skip
    # bf16 (the model's dtype) with and without the folded norm; fp16 (fp32 dots) with an fp32-weight norm.
    for bf16_dots, norm, weight in ((True, False, "*bf16"), (True, True, "*bf16"), (False, True, "*fp32")):
        dtype = "*bf16" if bf16_dots else "*fp16"
        pointers = {**fp32, "k_w_ptr": weight, "q_w_ptr": weight}
        pointers.update({name: dtype for name in ("q_ptr", "k_ptr", "v_ptr", "out_ptr")})
        flags = dict(HAS_ROPE=True, NORM=norm, W_HALF=weight == "*bf16", PRECISION="tf32",
                     BF16_DOTS=bf16_dots, INTERPRETED=False, BLOCK_HALF=64, BLOCK_DV=128)  # fmt: skip
        tiling = linear_attention.TILING[linear_attention.torch.bfloat16]
        yield (
            linear_attention._state_kernel,
            {**flags, "HAS_INITIAL": True, "BLOCK_N": tiling.block_n},
            pointers,
        )
        yield linear_attention._output_kernel, {**flags, "BLOCK_N": tiling.block_n}, pointers


def other_variants():
    for fast_silu, bias in ((True, True), (False, False)):
        flags = dict(
            HAS_BIAS=bias,
            FAST_SILU=fast_silu,
            BLOCK_C=mixffn_conv.MAX_BLOCK_C,
            BLOCK_H=mixffn_conv.MAX_BLOCK_H,
        )
        yield mixffn_conv._silu_dwconv_glu_kernel, flags, {}
    yield norms._layer_norm_modulate_kernel, {"BLOCK_D": 4096}, {}
    for round_to_w in (True, False):
        yield (
            norms._rms_norm_kernel,
            {"ROUND_TO_W": round_to_w, "BLOCK_D": 4096},
            {"w_ptr": "*bf16" if round_to_w else "*fp32"},
        )
    yield norms._glu_gate_kernel, {"SILU_INPUT": False, "BLOCK": 1024}, {}


def main() -> int:
    if linear_attention.INTERPRET:
        print("TRITON_INTERPRET=1: the kernels were defined for the interpreter; run with TRITON_INTERPRET=0")
        return 2
    built = 0
    for kernel, constexprs, pointers in itertools.chain(linear_attention_variants(), other_variants()):
        try:
            build(kernel, constexprs, pointers, num_warps=8)
        except Exception as error:  # the compiler's message names the line
            print(f"{kernel.fn.__name__} {constexprs} {pointers}:\n{error}")
            return 1
        built += 1
    print(f"compiled {built} kernel variants for sm_90")
    return 0


if __name__ == "__main__":
    sys.exit(main())
