"""`fp8_linear` on float8 tensor cores: one `torch._scaled_mm` with row-wise scales.

Hopper (and Ada) run it natively; the CPU build of torch runs the same call too, which is how the
tests compare it with the reference. `_scaled_mm` wants the first operand row-major (on CUDA it raises
otherwise; a transposed activation reaches it at batch 1, where [1, N, C] views of [1, C, N] flatten
without a copy) and the second column-major: the weight is stored [N, K] row-major, so its transpose is
that layout without a copy.
"""

from __future__ import annotations

import torch


def fp8_linear(x_fp8, x_scale, weight_fp8, weight_scale, bias, out_dtype):
    k, n = x_fp8.shape[1], weight_fp8.shape[0]
    if k % 16 or n % 16:
        raise ValueError(f"float8 matmuls need in and out features divisible by 16; got {k} and {n}")
    bias = None if bias is None else bias.to(out_dtype)
    x_fp8 = x_fp8.contiguous()  # a no-op when it is row-major already; compiled, the quantization writes so
    return torch._scaled_mm(x_fp8, weight_fp8.t(), scale_a=x_scale, scale_b=weight_scale.t(), bias=bias,
                            out_dtype=out_dtype)  # fmt: skip
