"""The production linear attention against the quadratic fp32 reference (outputs, gradients, states)."""

from __future__ import annotations

import math

import pytest
import torch

from sana_video.ops import LinearAttentionState, linear_attention, use_backend
from sana_video.ops.linear_attention import naive
from tests.conftest import rel_err

# The bf16 inference path multiplies on the tensor cores on CUDA (run there by scripts/gpu-ops-check.sh).
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _inputs(batch=2, tokens=7, heads=3, dim=24, dtype=torch.float32, seed=0, state=False):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, tokens, heads, dim, generator=gen, dtype=torch.float64) for _ in range(3))
    angles = torch.rand(tokens, dim // 2, generator=gen, dtype=torch.float64) * 2 * math.pi
    rope = (angles.cos().float(), angles.sin().float())
    initial = None
    if state:
        earlier_k = torch.randn(batch, 5, heads, dim, generator=gen, dtype=torch.float64).relu()
        earlier_v = torch.randn(batch, 5, heads, dim, generator=gen, dtype=torch.float64)
        initial = LinearAttentionState(
            torch.einsum("bnhi,bnhj->bhij", earlier_v, earlier_k).float(), earlier_k.sum(1).float()
        )
    return q.to(dtype), k.to(dtype), v.to(dtype), rope, initial


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("shape", [(1, 3, 1, 8), (2, 7, 3, 24), (1, 33, 2, 112)])
def test_fp32_outputs_and_final_state_match_reference(shape, with_state):
    batch, tokens, heads, dim = shape
    q, k, v, rope, initial = _inputs(batch, tokens, heads, dim, state=with_state)
    out, final = linear_attention(q, k, v, rope, initial_state=initial, output_final_state=True)
    ref_out, ref_final = naive.linear_attention(q, k, v, rope, initial, output_final_state=True)
    assert rel_err(out, ref_out) <= 1e-5
    assert rel_err(final.kv, ref_final[0]) <= 1e-5 and rel_err(final.k_sum, ref_final[1]) <= 1e-5


@pytest.mark.parametrize("with_state", [False, True])
def test_gradients_match_reference(with_state):
    q, k, v, rope, initial = _inputs(state=with_state)
    results = []
    for impl in ("eager", "naive"):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        state = LinearAttentionState(*(t.clone().requires_grad_() for t in initial)) if with_state else None
        with use_backend("linear_attention", impl):
            out, final = linear_attention(*leaves, rope, initial_state=state, output_final_state=True)
        gen = torch.Generator().manual_seed(1)
        loss = sum((t * torch.randn(t.shape, generator=gen)).sum() for t in (out, *final))
        loss.backward()
        results.append([t.grad for t in leaves] + ([t.grad for t in state] if with_state else []))
    for got, expected in zip(*results):
        assert rel_err(got, expected) <= 1e-5


def test_bf16_inputs_within_bf16_noise():
    q, k, v, rope, initial = _inputs(tokens=64, dim=32, state=True)
    out, final = linear_attention(
        q.bfloat16(), k.bfloat16(), v.bfloat16(), rope, initial_state=initial, output_final_state=True
    )
    ref_out, ref_final = naive.linear_attention(q, k, v, rope, initial, output_final_state=True)
    assert out.dtype == torch.bfloat16 and final.kv.dtype == torch.float32
    assert rel_err(out, ref_out) <= 2e-2
    assert rel_err(final.kv, ref_final[0]) <= 2e-2


def test_bf16_inference_sums_bf16_operands_in_fp32():
    """Inference on bf16 inputs rounds q̃ and k̃ to bf16 after RoPE (as the reference) and sums in fp32:
    S equals the fp64 sum over those rounded operands to fp32 accuracy (a bf16 S would be 2⁻⁹ off), and
    the output is that S applied to the rounded q̃, within the bf16 output's rounding."""
    q, k, v, rope, initial = _inputs(tokens=64, dim=32, state=True)
    q, k, v = q.bfloat16(), k.bfloat16(), v.bfloat16()
    with torch.no_grad():
        moved = (t.to(DEVICE) for t in (q, k, v))
        out, final = linear_attention(*moved, tuple(t.to(DEVICE) for t in rope),
                                      initial_state=LinearAttentionState(*(t.to(DEVICE) for t in initial)),
                                      output_final_state=True)  # fmt: skip
    out, final = out.cpu(), LinearAttentionState(*(t.cpu() for t in final))

    def rotated(x):  # RoPE(φ(x)) in fp32, rounded to bf16, then exact in fp64
        return naive.rope_complex(x.float().relu(), *rope).bfloat16().double()

    phi_q, phi_k = q.double().relu(), k.double().relu()
    kv = initial.kv.double() + torch.einsum("bnhi,bnhj->bhij", v.double(), rotated(k))
    k_sum = initial.k_sum.double() + phi_k.sum(dim=1)
    expected = (
        torch.einsum("bhij,bnhj->bnhi", kv, rotated(q))
        / torch.einsum("bnhj,bhj->bnh", phi_q, k_sum)[..., None]
    )
    assert rel_err(final.kv, kv) <= 1e-6 and rel_err(final.k_sum, k_sum) <= 1e-6
    # measured 1.7e-3 (the bf16 cast of the output); with S itself rounded to bf16 it would be 2.3e-3
    assert out.dtype == torch.bfloat16 and rel_err(out, expected) <= 2e-3


def test_bf16_inference_path_compiles_whole():
    """`pipe.optimize()` compiles the blocks with fullgraph: the bf16 path must trace without a break."""
    q, k, v, rope, _ = _inputs(tokens=16, dim=16)
    q, k, v = (t.to(DEVICE, torch.bfloat16) for t in (q, k, v))
    rope = tuple(t.to(DEVICE) for t in rope)
    compiled = torch.compile(linear_attention, fullgraph=True, dynamic=False)
    with torch.no_grad():
        out, final = compiled(q, k, v, rope, output_final_state=True)
        ref_out, ref_final = linear_attention(q, k, v, rope, output_final_state=True)
    # Inductor may fuse away the bf16 rounding of q̃ and k̃ before the upcast matmul (CPU): 1.6e-3 in S
    assert rel_err(out, ref_out) <= 1e-2 and rel_err(final.kv, ref_final.kv) <= 4e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_an_empty_chunk_gives_no_tokens_and_keeps_the_state(dtype):
    q, k, v, rope, initial = _inputs(tokens=0, state=True)
    with torch.no_grad():  # bf16 without gradients: the inference path
        out, final = linear_attention(q.to(dtype), k.to(dtype), v.to(dtype), rope, initial_state=initial,
                                      output_final_state=True)  # fmt: skip
    assert out.shape == (2, 0, 3, 24) and out.dtype == dtype
    assert torch.equal(final.kv, initial.kv) and torch.equal(final.k_sum, initial.k_sum)


def test_single_token_without_rope_returns_its_value():
    """Closed form: with one key, o = v kᵀq / (k·q) = v whenever φ(k)·φ(q) > 0."""
    q, k, v = (torch.rand(1, 1, 2, 8) + 0.1 for _ in range(3))
    out, _ = linear_attention(q, k, v)
    torch.testing.assert_close(out, v)


def test_all_negative_queries_give_zero_not_nan():
    q = -torch.rand(1, 4, 1, 6)
    k, v = torch.rand(1, 4, 1, 6), torch.rand(1, 4, 1, 6)
    out, _ = linear_attention(q, k, v)
    assert torch.equal(out, torch.zeros_like(out))


def test_states_compose_like_one_pass():
    """Running sums: the final state after chunks A then B equals the final state of one call on A+B."""
    q, k, v, rope, _ = _inputs(tokens=9)
    _, whole = linear_attention(q, k, v, rope, output_final_state=True)
    _, first = linear_attention(
        q[:, :4], k[:, :4], v[:, :4], (rope[0][:4], rope[1][:4]), output_final_state=True
    )
    _, both = linear_attention(
        q[:, 4:], k[:, 4:], v[:, 4:], (rope[0][4:], rope[1][4:]), initial_state=first, output_final_state=True
    )
    assert rel_err(both.kv, whole.kv) <= 1e-6 and rel_err(both.k_sum, whole.k_sum) <= 1e-6


def test_no_final_state_unless_asked():
    q, k, v, rope, _ = _inputs()
    assert linear_attention(q, k, v, rope)[1] is None


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(k=torch.zeros(2, 7, 3, 20)), "q and k"),
        (dict(v=torch.zeros(2, 6, 3, 24)), "v must be"),
        (dict(rope=(torch.zeros(7, 11), torch.zeros(7, 11))), "rope tables"),
        (
            dict(initial_state=LinearAttentionState(torch.zeros(2, 3, 24, 24), torch.zeros(1, 3, 24))),
            "state shapes",
        ),
    ],
)
def test_bad_shapes_raise(change, message):
    q, k, v, rope, _ = _inputs()
    args = dict(q=q, k=k, v=v, rope=rope, initial_state=None) | change
    with pytest.raises(ValueError, match=message):
        linear_attention(**args)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="no backend"), use_backend("linear_attention", "nope"):
        pass
