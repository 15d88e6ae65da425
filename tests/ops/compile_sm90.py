"""Compile every Triton kernel for Hopper (sm_90) on a machine without a GPU; optionally count its code.

    TRITON_INTERPRET=0 python tests/ops/compile_sm90.py          # every variant, down to a cubin
    TRITON_INTERPRET=0 python tests/ops/compile_sm90.py --sass   # + each kernel's hottest loop in SASS

Triton's interpreter (what the CPU tests run) executes a kernel's Python, so it accepts code the compiler
refuses — e.g. a jit function returning from inside a constexpr branch and again after it, which cost a
GPU run once. This builds each kernel in each variant the wrappers launch (the constexpr flags that
change its code, the pointer dtypes the model uses, the launch's warps) through Triton's real pipeline,
down to ptxas and a cubin. Exits non-zero with the first compiler error.

Integer arguments that are multiples of 16 at the 2B model's 480p shapes are declared so (`DIVISIBLE`),
as Triton's launcher specializes them at run time; with that the code is the one the GPU runs, and
`--sass` shows it: the instructions of the longest loop per thread, by opcode (nvdisasm ships with
Triton). For a kernel that is bound by issuing instructions, fewer of them is a speed-up that can be
found without a GPU (to be confirmed on one).
"""

from __future__ import annotations

import argparse
import collections
import inspect
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from sana_video.ops.linear_attention import triton_kernel as linear_attention
from sana_video.ops.mixffn_conv import triton_kernel as mixffn_conv
from sana_video.ops.norms import triton_kernels as norms

TARGET = GPUTarget("cuda", 90, 32)  # H100 / H200
# Arguments that are multiples of 16 at the 2B model's shapes (head dim 112, width 2240, Mix-FFN 5600;
# strides of [B, N, H, d] views of one q/k/v projection), and every pointer.
DIVISIBLE = {
    "dim", "dim_v", "hidden", "stride_kb", "stride_kn", "stride_kh", "stride_vb", "stride_vn", "stride_vh",
    "stride_qb", "stride_qn", "stride_qh", "stride_ob", "stride_on", "stride_oh", "stride_zb", "stride_zn",
}  # fmt: skip


def build(kernel, constexprs: dict, pointers: dict[str, str], num_warps: int):
    """Compile `kernel` with these constexpr values; pointer arguments get the dtypes in `pointers`
    (default bf16), `eps` is fp32 and every other argument i32."""
    names = list(inspect.signature(kernel.fn).parameters)
    signature, attrs = {}, {}
    for index, name in enumerate(names):
        if name in constexprs:
            signature[name] = "constexpr"
            continue
        if name.endswith("_ptr"):
            signature[name] = pointers.get(name, "*bf16")
        else:
            signature[name] = "fp32" if name == "eps" else "i32"
        if name.endswith("_ptr") or name in DIVISIBLE:
            attrs[(index,)] = [["tt.divisibility", 16]]
    source = ASTSource(
        kernel, signature, constexprs={(names.index(k),): v for k, v in constexprs.items()}, attrs=attrs
    )
    return triton.compile(source, target=TARGET, options={"num_warps": num_warps, "num_stages": 1})


def linear_attention_variants():
    fp32 = {name: "*fp32" for name in ("cos_ptr", "sin_ptr", "kv0_ptr", "k_sum0_ptr", "kv_ptr", "k_sum_ptr",
                                       "k_rstd_ptr", "q_rstd_ptr")}  # fmt: skip
    # bf16 (the model's dtype) with and without the folded norm; fp16 (fp32 dots) with an fp32-weight norm.
    for bf16_dots, norm, weight in ((True, False, "*bf16"), (True, True, "*bf16"), (False, True, "*fp32")):
        dtype = torch.bfloat16 if bf16_dots else torch.float16
        pointers = {**fp32, "k_w_ptr": weight, "q_w_ptr": weight}
        pointers.update(
            {name: "*bf16" if bf16_dots else "*fp16" for name in ("q_ptr", "k_ptr", "v_ptr", "out_ptr")}
        )
        tiling = linear_attention.TILING[dtype]
        flags = dict(HAS_ROPE=True, NORM=norm, W_HALF=weight == "*bf16", PRECISION="tf32",
                     BF16_DOTS=bf16_dots, INTERPRETED=False, BLOCK_N=tiling.block_n, BLOCK_HALF=64,
                     BLOCK_DV=128)  # fmt: skip
        name = (
            f"linear attention ({'bf16' if bf16_dots else 'fp16'}, norm {'off' if not norm else weight[1:]})"
        )
        yield (
            f"{name} state",
            linear_attention._state_kernel,
            {**flags, "HAS_INITIAL": True},
            pointers,
            tiling.num_warps,
        )
        yield f"{name} output", linear_attention._output_kernel, flags, pointers, tiling.num_warps


def other_variants():
    block_c, block_h = mixffn_conv.MAX_BLOCK_C, mixffn_conv.MAX_BLOCK_H
    warps = mixffn_conv.NUM_WARPS or (8 if block_c * block_h >= 2048 else 4)
    for fast_silu, bias in ((True, True), (False, False)):
        flags = dict(HAS_BIAS=bias, FAST_SILU=fast_silu, BLOCK_C=block_c, BLOCK_H=block_h)
        name = f"silu_dwconv_glu ({'tanh' if fast_silu else 'exact'} SiLU)"
        yield name, mixffn_conv._silu_dwconv_glu_kernel, flags, {}, warps
    yield "layer_norm_modulate", norms._layer_norm_modulate_kernel, {"BLOCK_D": 4096}, {}, 8
    for round_to_w in (True, False):
        pointers = {"w_ptr": "*bf16" if round_to_w else "*fp32"}
        yield "rms_norm", norms._rms_norm_kernel, {"ROUND_TO_W": round_to_w, "BLOCK_D": 4096}, pointers, 8
    yield "glu_gate", norms._glu_gate_kernel, {"SILU_INPUT": False, "BLOCK": 1024}, {}, 4


def hottest_loop(cubin: bytes) -> tuple[str, int, collections.Counter]:
    """The longest backward branch's body in SASS ("loop"), else the whole kernel ("kernel"): which,
    its instruction count and its opcodes."""
    nvdisasm = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "nvdisasm"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        lines = subprocess.run(
            [str(nvdisasm), "-c", file.name], capture_output=True, text=True, check=True
        ).stdout
    lines = lines.splitlines()
    labels = {line.strip()[:-1]: i for i, line in enumerate(lines) if re.match(r"^\.L_x_\d+:$", line.strip())}
    span = None
    for i, line in enumerate(lines):
        target = re.search(r"BRA `\((\.L_x_\d+)\)", line)
        start = labels.get(target.group(1), i) if target else i
        if start < i - 1 and (span is None or i - start > span[1] - span[0]):  # not the final self-branch
            span = (start, i)
    what, span = ("loop", span) if span else ("kernel", (0, len(lines) - 1))
    opcodes = collections.Counter()
    for line in lines[span[0] : span[1] + 1]:
        found = re.search(r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P[0-9T] )?([A-Z0-9_]+)", line)
        if found:
            opcodes[found.group(1)] += 1
    return what, sum(opcodes.values()), opcodes


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sass", action="store_true", help="print each kernel's hottest loop, by opcode")
    args = parser.parse_args()
    if linear_attention.INTERPRET:
        print("TRITON_INTERPRET=1: the kernels were defined for the interpreter; run with TRITON_INTERPRET=0")
        return 2
    built = 0
    for name, kernel, constexprs, pointers, warps in (*linear_attention_variants(), *other_variants()):
        try:
            compiled = build(kernel, constexprs, pointers, warps)
        except Exception as error:  # the compiler's message names the line
            print(f"{name}: {kernel.fn.__name__} {constexprs} {pointers}:\n{error}")
            return 1
        built += 1
        if args.sass:
            what, count, opcodes = hottest_loop(compiled.asm["cubin"])
            top = ", ".join(f"{op} {n}" for op, n in opcodes.most_common(8))
            print(f"{name:45s} {warps} warps, {what} {count:5d} instructions a thread: {top}")
    print(f"compiled {built} kernel variants for sm_90")
    return 0


if __name__ == "__main__":
    sys.exit(main())
