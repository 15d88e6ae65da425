"""fp32 reference for `fp8_linear`: dequantize both operands, multiply in fp32, add the bias, cast.

Written independently of `torch._scaled_mm`; with row-wise scales the product of dequantized operands
is exactly what a scaled fp8 matmul computes before its output rounding.
"""

from __future__ import annotations


def fp8_linear(x_fp8, x_scale, weight_fp8, weight_scale, bias, out_dtype):
    x = x_fp8.float() * x_scale  # [M, K]
    weight = weight_fp8.float() * weight_scale  # [N, K]
    out = x @ weight.t()
    if bias is not None:
        out = out + bias.float()
    return out.to(out_dtype)
