"""The fused Triton linear attention against the quadratic fp32 reference (`naive`) and `eager`.

On a machine without a GPU the kernels run in Triton's interpreter: tests/conftest.py sets
TRITON_INTERPRET=1 there before anything imports triton (kernels choose compile or interpret when they
are defined). Shapes stay small because the interpreter is slow; one case uses the 2B model's d = 112.
"""

from __future__ import annotations

import math

import pytest
import torch

from sana_video.ops import LinearAttentionState, QKNorm, dispatch, linear_attention, use_backend
from sana_video.ops.linear_attention import eager
from sana_video.ops.norms import naive as norms_naive
from tests.conftest import rel_err

triton_kernel = pytest.importorskip("sana_video.ops.linear_attention.triton_kernel", exc_type=ImportError)
if not (triton_kernel.INTERPRET or torch.cuda.is_available()):
    pytest.skip("triton was imported without TRITON_INTERPRET=1 and there is no GPU", allow_module_level=True)

DEVICE = "cpu" if triton_kernel.INTERPRET else "cuda"
# bf16/fp16 inputs: the output's rounding dominates (and the interpreter truncates where a GPU
# rounds to nearest, one more ulp); the fp32 state from half inputs may use TF32 products on a GPU.
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}
STATE_TOL_HALF = 2e-3
SMALL_TILES = triton_kernel.Tiling(block_n=16, num_warps=4, num_stages=1)  # several tiles from few tokens


@pytest.fixture(autouse=True)
def _poison_outputs(monkeypatch):
    """Outputs and states start as NaN, so any element a kernel fails to write fails the checks."""
    monkeypatch.setattr(triton_kernel, "POISON_OUTPUTS", True)


def _inputs(batch=2, tokens=7, heads=3, dim=24, dim_v=None, seed=0, rope=True, state=False):
    """fp32 q, k [B, N, H, d], v [B, N, H, d_v], rope tables, and a state made from earlier keys."""
    dim_v = dim_v or dim
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(batch, tokens, heads, dim, generator=gen, dtype=torch.float64) for _ in range(2))
    v = torch.randn(batch, tokens, heads, dim_v, generator=gen, dtype=torch.float64)
    angles = torch.rand(tokens, dim // 2, generator=gen, dtype=torch.float64) * 2 * math.pi
    tables = (angles.cos().float().to(DEVICE), angles.sin().float().to(DEVICE)) if rope else None
    initial = None
    if state:
        earlier_k = torch.randn(batch, 5, heads, dim, generator=gen, dtype=torch.float64).relu()
        earlier_v = torch.randn(batch, 5, heads, dim_v, generator=gen, dtype=torch.float64)
        initial = LinearAttentionState(
            torch.einsum("bnhi,bnhj->bhij", earlier_v, earlier_k).float().to(DEVICE),
            earlier_k.sum(1).float().to(DEVICE),
        )
    q, k, v = (t.float().to(DEVICE) for t in (q, k, v))
    return q, k, v, tables, initial


def _run(backend, q, k, v, rope, initial=None, output_final_state=True):
    with use_backend("linear_attention", backend):
        return linear_attention(q, k, v, rope, initial_state=initial, output_final_state=output_final_state)


def _check(got, expected, tol):
    out, final = got
    ref_out, ref_final = expected
    assert out.dtype == ref_out.dtype and out.shape == ref_out.shape
    assert torch.isfinite(out).all(), "kernel left output elements unwritten"
    assert rel_err(out, ref_out) <= tol, rel_err(out, ref_out)
    assert (final is None) == (ref_final is None)
    if final is not None:
        for got_t, ref_t in zip(final, ref_final):
            assert got_t.dtype == torch.float32 and got_t.shape == ref_t.shape
            assert torch.isfinite(got_t).all(), "kernel left state elements unwritten"
            assert rel_err(got_t, ref_t) <= tol, rel_err(got_t, ref_t)


@pytest.mark.parametrize("output_final_state", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("with_rope", [False, True])
@pytest.mark.parametrize("tokens, dim_v", [(7, 24), (37, 16)])
def test_fp32_matches_naive_and_eager(tokens, dim_v, with_rope, with_state, output_final_state):
    q, k, v, rope, initial = _inputs(tokens=tokens, dim_v=dim_v, rope=with_rope, state=with_state)
    got = _run("triton", q, k, v, rope, initial, output_final_state)
    _check(got, _run("naive", q, k, v, rope, initial, output_final_state), TOL[torch.float32])
    _check(got, _run("eager", q, k, v, rope, initial, output_final_state), TOL[torch.float32])


@pytest.mark.parametrize("dim_v", [112, 32])
def test_model_head_dim(dim_v):
    # The 2B model's head dim: 112 channels pad to 2 × 64 (even/odd halves), d_v = 112 to 128.
    q, k, v, rope, initial = _inputs(batch=1, tokens=9, heads=2, dim=112, dim_v=dim_v, state=True)
    got = _run("triton", q, k, v, rope, initial)
    _check(got, _run("naive", q, k, v, rope, initial), TOL[torch.float32])
    _check(got, _run("eager", q, k, v, rope, initial), TOL[torch.float32])


def test_odd_head_dim_without_rope():
    # Without RoPE d may be odd: one more even channel than odd ones.
    q, k, v, _, initial = _inputs(tokens=7, dim=23, dim_v=16, rope=False, state=True)
    got = _run("triton", q, k, v, None, initial)
    _check(got, _run("naive", q, k, v, None, initial), TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs(dtype):
    q, k, v, rope, initial = _inputs(tokens=37, dim_v=16, state=True)
    half = [t.to(dtype) for t in (q, k, v)]
    out, final = _run("triton", *half, rope, initial)
    assert out.dtype == dtype
    # Against the fp32 reference on the unrounded inputs: within the dtype's noise.
    ref_out, ref_final = _run("naive", q, k, v, rope, initial)
    assert torch.isfinite(out).all() and rel_err(out, ref_out) <= TOL[dtype]
    assert rel_err(final.kv, ref_final.kv) <= TOL[dtype]
    # Against eager on the same rounded inputs: both compute in fp32 from there on.
    eager_out, eager_final = _run("eager", *half, rope, initial)
    assert rel_err(out, eager_out) <= TOL[dtype]
    for got_t, ref_t in zip(final, eager_final):
        assert rel_err(got_t, ref_t) <= STATE_TOL_HALF


@pytest.mark.parametrize("output_programs", [1, 2, None])
def test_bf16_takes_eager_bf16_operands(output_programs):
    """bf16 inputs: k̃ and q̃ rounded to bf16 after RoPE, fp32 sums, S as bf16 high + low parts — the
    eager bf16 path's numerics. The state then agrees to fp32 summation order (unrounded k̃ would be
    ~1e-3 off); the output to its bf16 rounding (the interpreter truncates it). 37 tokens in tiles of
    16 are 3 tiles: one output program walks all three, or two share them, or one per tile."""
    q, k, v, rope, initial = _inputs(batch=1, tokens=37, heads=2, dim=112, dim_v=112, state=True)
    half = [t.to(torch.bfloat16) for t in (q, k, v)]
    out, final = triton_kernel.linear_attention(
        *half, rope, initial, True, 1e-15, tiling=SMALL_TILES, output_programs=output_programs
    )
    ref_out, ref_final = eager.linear_attention(*half, rope, initial, True, 1e-15)
    assert torch.isfinite(out).all() and rel_err(out, ref_out) <= 1e-2
    assert rel_err(final[0], ref_final[0]) <= 1e-6 and rel_err(final[1], ref_final[1]) <= 1e-6


@pytest.mark.parametrize("split_tokens", [16, 32, None])
def test_several_tiles_and_splits(split_tokens):
    """37 tokens in tiles of 16: 3 tiles in one program, or split over 2 or 3 programs whose partial
    states are added afterwards. The initial state must be added exactly once."""
    q, k, v, rope, initial = _inputs(tokens=37, dim_v=16, state=True)
    got = triton_kernel.linear_attention(
        q, k, v, rope, initial, True, 1e-15, tiling=SMALL_TILES, split_tokens=split_tokens
    )
    _check(got, eager.linear_attention(q, k, v, rope, initial, True, 1e-15), TOL[torch.float32])
    again = triton_kernel.linear_attention(
        q, k, v, rope, initial, True, 1e-15, tiling=SMALL_TILES, split_tokens=split_tokens
    )
    # No atomics: the same bits on every run.
    assert torch.equal(got[0], again[0]) and all(map(torch.equal, got[1], again[1]))


def test_chunks_with_threaded_state_match_eager():
    """Block-causal use: chunk B reads chunk A's state. Same outputs and states as eager's chunks."""
    q, k, v, rope, _ = _inputs(tokens=37, dim_v=16)
    cut = 20
    results = {}
    for backend in ("triton", "eager"):
        first = _run(backend, q[:, :cut], k[:, :cut], v[:, :cut], tuple(t[:cut] for t in rope))
        second = _run(backend, q[:, cut:], k[:, cut:], v[:, cut:], tuple(t[cut:] for t in rope), first[1])
        results[backend] = (first, second)
    for got, expected in zip(results["triton"], results["eager"]):
        _check(got, expected, TOL[torch.float32])
    # The threaded state equals one pass over both chunks.
    _, whole = _run("eager", q, k, v, rope)
    assert rel_err(results["triton"][1][1].kv, whole.kv) <= TOL[torch.float32]


def test_strided_views_of_a_fused_projection():
    # q, k, v as views of one [B, N, 3, H, d] projection: token stride 3·H·d, read in place.
    gen = torch.Generator().manual_seed(3)
    qkv = torch.randn(2, 7, 3, 3, 24, generator=gen).to(DEVICE)
    q, k, v = qkv.unbind(2)
    _, _, _, rope, initial = _inputs(tokens=7, state=True)
    got = _run("triton", q, k, v, rope, initial)
    _check(got, _run("eager", q, k, v, rope, initial), TOL[torch.float32])


def test_all_negative_queries_give_zero_and_empty_chunk_keeps_state():
    q = -torch.rand(1, 4, 2, 16).to(DEVICE)
    k, v = torch.rand(1, 4, 2, 16).to(DEVICE), torch.rand(1, 4, 2, 16).to(DEVICE)
    out, _ = _run("triton", q, k, v, None)
    assert torch.equal(out, torch.zeros_like(out))
    _, _, _, _, initial = _inputs(batch=1, heads=2, dim=16, state=True)
    empty = torch.zeros(1, 0, 2, 16, device=DEVICE)
    out, final = _run("triton", empty, empty, empty, None, initial)
    assert out.shape == (1, 0, 2, 16)
    assert torch.equal(final.kv, initial.kv) and torch.equal(final.k_sum, initial.k_sum)


def test_refuses_inputs_that_need_gradients():
    q, k, v, rope, _ = _inputs()
    with pytest.raises(RuntimeError, match="forward only"):
        _run("triton", q.requires_grad_(), k, v, rope)


def test_backend_choice(monkeypatch):
    """The default for half-precision CUDA tensors that need no gradient; CPU tensors, fp32 and training
    stay on eager; forced, it runs anywhere."""
    cpu = torch.zeros(2, 7, 3, 24, dtype=torch.bfloat16)
    cuda = torch.zeros(2, 7, 3, 24, device="meta", dtype=torch.bfloat16)
    monkeypatch.setattr(type(cuda), "is_cuda", property(lambda t: t.device.type in ("cuda", "meta")))
    assert dispatch.resolve("linear_attention", cpu) is eager.linear_attention
    assert dispatch.resolve("linear_attention", cuda) is triton_kernel.linear_attention_op
    assert dispatch.resolve("linear_attention", cuda.half()) is triton_kernel.linear_attention_op
    assert dispatch.resolve("linear_attention", cuda.float()) is eager.linear_attention
    assert dispatch.resolve("linear_attention", cuda.clone().requires_grad_()) is eager.linear_attention
    with use_backend("linear_attention", "triton"):
        assert dispatch.resolve("linear_attention", cpu) is triton_kernel.linear_attention_op


def test_split_heuristic(monkeypatch):
    """On a GPU N is split so B·H·splits programs come to about two per SM, in whole tiles."""
    monkeypatch.setattr(triton_kernel, "INTERPRET", False)
    monkeypatch.setattr(triton_kernel, "_multiprocessors", lambda device: 132)
    cuda = torch.device("cuda", 0)
    split = triton_kernel._split_tokens(20, 32760, 64, cuda)  # the 2B model: 20 heads, 32,760 tokens
    assert split % 64 == 0 and math.ceil(32760 / split) == 14
    assert triton_kernel._split_tokens(20, 7, 64, cuda) == 64  # a short chunk stays one program per head
    assert triton_kernel._split_tokens(20, 32760, 64, torch.device("cpu")) >= 32760


def test_dispatch_runs_one_opaque_op_that_compiles():
    """What dispatch runs is one custom op (Inductor calls it, rather than tracing the kernels): the
    same bits as the kernel called directly, eager and under torch.compile(fullgraph=True), and it
    passes torch.library's checks (fake shapes, no aliasing)."""
    q, k, v, rope, initial = _inputs(tokens=9, dim_v=16, state=True)
    direct = triton_kernel.linear_attention(q, k, v, rope, initial, True, 1e-15)
    opaque = triton_kernel.linear_attention_op(q, k, v, rope, initial, True, 1e-15)
    compiled = torch.compile(triton_kernel.linear_attention_op, fullgraph=True, backend="aot_eager")
    traced = compiled(q, k, v, rope, initial, True, 1e-15)
    for got in (opaque, traced):
        assert torch.equal(got[0], direct[0]) and all(map(torch.equal, got[1], direct[1]))
    assert triton_kernel.linear_attention_op(q, k, v, None, None, False, 1e-15)[1] is None
    torch.library.opcheck(
        triton_kernel._linear_attention_op,
        (q, k, v, *rope, *initial, 1e-15, None, None, 0.0),
        test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"),
    )


def _qk_norm(heads, dim, dtype, seed=5):
    """Norm weights around 1 with a few negative ones (so the norm changes which channels ReLU keeps)."""
    gen = torch.Generator().manual_seed(seed)
    weights = (1 + 0.6 * torch.randn(2, heads * dim, generator=gen)).to(DEVICE, dtype)
    return QKNorm(weights[0], weights[1], 1e-5)


def _normed(x, weight, eps):
    """The fp32 reference RMSNorm across heads, written out (not the op under test)."""
    return norms_naive.rms_norm(x.flatten(2), weight, eps).unflatten(-1, x.shape[-2:])


@pytest.mark.parametrize(
    "dim, dim_v, tiling, split",
    [
        (24, 24, None, None),
        (112, 32, SMALL_TILES, 16),
    ],  # the 2B head dim pads 56 pairs to 64; 3 tiles, 3 splits
)
def test_qk_norm_in_the_loads_fp32(dim, dim_v, tiling, split):
    """RMSNorm across heads applied while the kernels load q and k: against the reference norm followed
    by the reference attention. q and k are scaled far from unit RMS, so a missing or per-head norm
    is off by the scale."""
    q, k, v, rope, initial = _inputs(batch=2, tokens=37, heads=3, dim=dim, dim_v=dim_v, state=True)
    q, k = 3.0 * q, 0.2 * k + 0.1
    norm = _qk_norm(3, dim, torch.float32)
    got = triton_kernel.linear_attention(
        q, k, v, rope, initial, True, 1e-15, tiling=tiling, split_tokens=split, qk_norm=tuple(norm)
    )
    qn, kn = _normed(q, norm.q_weight, norm.eps), _normed(k, norm.k_weight, norm.eps)
    _check(got, naive_run := _run("naive", qn, kn, v, rope, initial), TOL[torch.float32])
    # Through the dispatch: the same with the kernel (folded) and with eager (normed first).
    _check(_run_normed("triton", q, k, v, rope, initial, norm), naive_run, TOL[torch.float32])
    _check(_run_normed("eager", q, k, v, rope, initial, norm), naive_run, TOL[torch.float32])


def _run_normed(backend, q, k, v, rope, initial, norm):
    with use_backend("linear_attention", backend):
        return linear_attention(q, k, v, rope, initial_state=initial, output_final_state=True, qk_norm=norm)


@pytest.mark.parametrize("weight_dtype", [torch.bfloat16, torch.float32])
def test_qk_norm_in_the_loads_bf16(weight_dtype):
    """bf16 q, k (views of one fused projection, as the model's FP8 path gives) with bf16 or fp32 norm
    weights: against eager on the model's own RMSNorm of them — within bf16 rounding (a normed value
    may round one ulp apart: the kernel's statistic sums in another order)."""
    gen = torch.Generator().manual_seed(7)
    qkv = torch.randn(1, 37, 3, 2, 112, generator=gen).to(DEVICE, torch.bfloat16)
    q, k, v = qkv.unbind(2)
    _, _, _, rope, initial = _inputs(batch=1, tokens=37, heads=2, dim=112, state=True)
    norm = _qk_norm(2, 112, weight_dtype)
    out, final = _run_normed("triton", q, k, v, rope, initial, norm)
    qn, kn = _normed(q, norm.q_weight, norm.eps), _normed(k, norm.k_weight, norm.eps)
    ref_out, ref_final = eager.linear_attention(qn, kn, v, rope, initial, True, 1e-15)
    assert torch.isfinite(out).all() and rel_err(out, ref_out) <= TOL[torch.bfloat16]
    for got_t, ref_t in zip(final, ref_final):
        assert rel_err(got_t, ref_t) <= STATE_TOL_HALF


def test_qk_norm_weights_that_need_gradients_get_them():
    """Where autograd needs the norm weights, the dispatch norms q and k itself, and the normed q (which
    then needs a gradient) chooses the backend, so gradients reach the weights."""
    q, k, v, rope, _ = _inputs(tokens=7)
    norm = _qk_norm(3, 24, torch.float32)
    norm = QKNorm(norm.q_weight.clone().requires_grad_(), norm.k_weight.clone().requires_grad_(), norm.eps)
    with torch.no_grad():
        expected = _run_normed("eager", q, k, v, rope, None, norm)[0]
    out = _run_normed("eager", q, k, v, rope, None, norm)[0]
    out.sum().backward()
    assert torch.allclose(out, expected) and norm.q_weight.grad is not None and norm.k_weight.grad is not None
