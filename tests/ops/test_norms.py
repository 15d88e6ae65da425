"""Triton norms and Mix-FFN gate against the fp32 references and the model's own code.

On a machine without a GPU the kernels run in Triton's interpreter: tests/conftest.py sets
TRITON_INTERPRET=1 there before anything imports triton (kernels choose compile or interpret when they
are defined).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sana_video.model.layers import RMSNorm, layer_norm, modulate
from sana_video.ops import dispatch, norms, use_backend
from sana_video.ops.norms import eager, glu_gate, layer_norm_modulate, naive, rms_norm
from tests.conftest import rel_err

triton_kernels = pytest.importorskip("sana_video.ops.norms.triton_kernels", exc_type=ImportError)
if not (triton_kernels.INTERPRET or torch.cuda.is_available()):
    pytest.skip("triton was imported without TRITON_INTERPRET=1 and there is no GPU", allow_module_level=True)

DEVICE = "cpu" if triton_kernels.INTERPRET else "cuda"
TOL = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 2e-2}
DTYPES = [torch.float32, torch.bfloat16]


@pytest.fixture(autouse=True)
def _poison_outputs(monkeypatch):
    """Outputs start as NaN, so any element a kernel fails to write fails the finiteness checks."""
    monkeypatch.setattr(triton_kernels, "POISON_OUTPUTS", True)


def _randn(*shape, dtype=torch.float32, seed=0, std=1.0, mean=0.0):
    gen = torch.Generator().manual_seed(seed)
    return (mean + std * torch.randn(*shape, generator=gen)).to(DEVICE, dtype)


def _check(out, expected, dtype):
    assert out.dtype == expected.dtype and out.shape == expected.shape
    assert torch.isfinite(out).all(), "kernel left elements unwritten"
    assert rel_err(out, expected) <= TOL[dtype], rel_err(out, expected)


@pytest.mark.parametrize("per_token", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [24, 72, 130])
def test_layer_norm_modulate(dim, dtype, per_token):
    batch, tokens, eps = 2, 7, 1e-6
    x = _randn(batch, tokens, dim, dtype=dtype, mean=0.5, std=2.0)  # a mean to remove
    table = _randn(batch, tokens if per_token else 1, 2, dim, dtype=dtype, seed=1, std=0.5)
    shift, scale = table.unbind(-2)  # strided views, as the block's modulation table gives
    with use_backend("layer_norm_modulate", "triton"):
        out = layer_norm_modulate(x, shift, scale, eps)
    reference = naive.layer_norm_modulate(x, shift, scale, eps)
    model = modulate(layer_norm(x, eps), shift, scale)  # in dtype; rounds after each step in bf16
    assert torch.equal(eager.layer_norm_modulate(x, shift, scale, eps), model)  # the block's default path
    _check(out, reference, dtype)
    _check(out, model, dtype)
    if dtype == torch.float32:
        # The naive reference against the model: independently written, same math.
        assert rel_err(reference, model) <= 1e-6


@pytest.mark.parametrize("weight_dtype", [None, torch.bfloat16])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [24, 72, 130])
def test_rms_norm_matches_module(dim, dtype, weight_dtype):
    x = _randn(2, 7, dim, dtype=dtype, std=3.0)
    module = RMSNorm(dim, eps=1e-5).to(DEVICE, weight_dtype or dtype)
    with torch.no_grad():
        module.weight.copy_(_randn(dim, seed=2, mean=1.0, std=0.3))
    with torch.no_grad():
        model = module(x)  # the module's default path (the diffusers comparisons check it)
        with use_backend("rms_norm", "triton"):
            out = rms_norm(x, module.weight, module.eps)
            assert torch.equal(module(x), out)  # forced, the module runs the kernel
    reference = naive.rms_norm(x, module.weight, module.eps)
    # fp32 x with a bf16 weight: the module's output is bf16-rounded, so bf16 tolerance applies.
    tol_dtype = weight_dtype or dtype
    _check(out, reference, tol_dtype)
    _check(out, model, tol_dtype)
    assert rel_err(reference, model) <= TOL[tol_dtype] / 10
    if weight_dtype is not None:
        # The module rounds to the weight's dtype before casting to x's; a kernel skipping that step
        # would still pass the tolerance above, but not this.
        assert torch.equal(out.to(weight_dtype).to(out.dtype), out)


def test_rms_norm_leading_dims_and_wide_rows():
    # Arbitrary leading dims, and the 2B model's width (a non-power-of-two row of 2240).
    for shape in [(2, 3, 5, 24), (1, 3, 2240)]:
        x = _randn(*shape, std=2.0)
        weight = _randn(shape[-1], seed=3, mean=1.0, std=0.3)
        with use_backend("rms_norm", "triton"):
            out = rms_norm(x, weight, 1e-5)
        _check(out, naive.rms_norm(x, weight, 1e-5), torch.float32)


def test_layer_norm_modulate_wide_rows():
    x = _randn(1, 3, 2240, mean=0.5, std=2.0)
    shift, scale = _randn(1, 1, 2, 2240, seed=1, std=0.5).unbind(-2)
    with use_backend("layer_norm_modulate", "triton"):
        out = layer_norm_modulate(x, shift, scale, 1e-6)
    _check(out, modulate(layer_norm(x, 1e-6), shift, scale), torch.float32)


@pytest.mark.parametrize("silu_input", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", [12, 36, 65])
def test_glu_gate(hidden, dtype, silu_input):
    y = _randn(2, 7, 2 * hidden, dtype=dtype, std=2.0)
    with use_backend("glu_gate", "triton"):
        out = glu_gate(y, silu_input=silu_input)
    # The model's expression (mixffn.py), in y's dtype.
    u, gate = (F.silu(y) if silu_input else y).chunk(2, dim=-1)
    model = u * F.silu(gate)
    _check(out, naive.glu_gate(y, silu_input), dtype)
    _check(out, model, dtype)


def test_glu_gate_several_column_blocks_and_leading_dims():
    # h = 1100 spans two column blocks of the elementwise tiling; a 4-D input flattens to rows.
    y = _randn(2, 1, 3, 2 * 1100, std=2.0)
    with use_backend("glu_gate", "triton"):
        out = glu_gate(y)
    _check(out, naive.glu_gate(y), torch.float32)


def test_fp16_and_non_contiguous_inputs():
    x = _randn(2, 130, 7, dtype=torch.float16).transpose(1, 2)  # [2, 7, 130], not contiguous
    shift, scale = _randn(2, 1, 2, 130, dtype=torch.float16, seed=1, std=0.5).unbind(-2)
    weight = _randn(130, dtype=torch.float16, seed=2, mean=1.0, std=0.3)
    with use_backend("layer_norm_modulate", "triton"), use_backend("rms_norm", "triton"):
        _check(
            layer_norm_modulate(x, shift, scale), naive.layer_norm_modulate(x, shift, scale), torch.float16
        )
        _check(rms_norm(x, weight), naive.rms_norm(x, weight), torch.float16)
    with use_backend("glu_gate", "triton"):
        _check(glu_gate(x[..., :128]), naive.glu_gate(x[..., :128]), torch.float16)


def test_backend_choice(monkeypatch):
    """Opt-in: the model's own math is chosen (eager for the LayerNorm, the reference for RMSNorm);
    forced, the kernels run on CUDA tensors that need no gradient, when triton is there."""
    cpu, cuda = torch.zeros(2, 7, 24), torch.zeros(2, 7, 24, device="meta")
    monkeypatch.setattr(type(cuda), "is_cuda", property(lambda t: t.device.type in ("cuda", "meta")))
    assert not norms.triton_available(cpu) and dispatch.resolve("rms_norm", cpu) is naive.rms_norm
    assert norms.triton_available(cuda) and dispatch.resolve("rms_norm", cuda) is naive.rms_norm  # opt-in
    for x in (cpu, cuda):
        assert dispatch.resolve("layer_norm_modulate", x) is eager.layer_norm_modulate
    assert not norms.triton_available(torch.zeros(2, 7, 24, device="meta").requires_grad_())
    with use_backend("rms_norm", "triton"):
        assert dispatch.resolve("rms_norm", cuda) is triton_kernels.rms_norm_op
    monkeypatch.setattr(norms, "triton_kernels", None)  # as without triton installed
    assert not norms.triton_available(cuda)


def test_dispatch_runs_opaque_ops_that_compile():
    """What dispatch runs for the norms is one custom op each (Inductor calls it rather than tracing the
    kernel): the same bits as the kernel called directly, eager and under torch.compile(fullgraph=True),
    and torch.library's checks pass (schema, fake shapes)."""
    x = _randn(2, 5, 24)
    shift, scale = _randn(2, 1, 2, 24, seed=1, std=0.5).unbind(-2)
    weight = _randn(24, seed=2, mean=1.0, std=0.3)
    cases = (
        (triton_kernels.layer_norm_modulate, triton_kernels.layer_norm_modulate_op,
         triton_kernels._layer_norm_modulate_op, (x, shift, scale, 1e-6)),
        (triton_kernels.rms_norm, triton_kernels.rms_norm_op, triton_kernels._rms_norm_op, (x, weight, 1e-5)),
    )  # fmt: skip
    for kernel, op, custom, args in cases:
        direct = kernel(*args)
        compiled = torch.compile(op, fullgraph=True, backend="aot_eager")
        for got in (op(*args), compiled(*args)):
            assert torch.equal(got, direct)
        torch.library.opcheck(
            custom, args, test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static")
        )
