"""The self-attention hands its q/k RMSNorms to the op, and applies any other norm module itself."""

from __future__ import annotations

import torch
from torch import nn

from sana_video.model.attention import LinearSelfAttention
from sana_video.ops import linear_attention
from sana_video.ops.norms import naive
from tests.conftest import rel_err


def _attention(seed=0):
    torch.manual_seed(seed)
    attn = LinearSelfAttention(
        dim=32, heads=2, head_dim=16, bias=True, qk_norm="rms_norm_across_heads", dropout=0.0
    )
    with torch.no_grad():
        attn.norm_q.weight.uniform_(0.5, 1.5)
        attn.norm_k.weight.uniform_(-1.0, 1.5)
    return attn.eval()


def _expected(attn, x, rope, norm_q, norm_k):
    """Projections, the given norms, then the op without any norm: written out."""
    q, k, v = (norm_q(attn.to_q(x)), norm_k(attn.to_k(x)), attn.to_v(x))
    q, k, v = (t.unflatten(-1, (2, -1)) for t in (q, k, v))
    out, _ = linear_attention(q, k, v, rope)
    return attn.to_out(out.flatten(2))


@torch.no_grad()
def test_rms_norms_reach_the_op_and_other_norms_run_here():
    attn = _attention()
    x = torch.randn(2, 6, 32)
    angles = torch.rand(6, 8) * 6.28
    rope = (angles.cos(), angles.sin())
    out, _ = attn(x, rope, None, False)
    expected = _expected(attn, x, rope, lambda t: naive.rms_norm(t, attn.norm_q.weight, 1e-5),
                         lambda t: naive.rms_norm(t, attn.norm_k.weight, 1e-5))  # fmt: skip
    assert rel_err(out, expected) <= 1e-6
    # A norm module the op does not know (here a LayerNorm) is applied by the module itself.
    attn.norm_q, attn.norm_k = nn.LayerNorm(32), nn.LayerNorm(32)
    out, _ = attn(x, rope, None, False)
    assert rel_err(out, _expected(attn, x, rope, attn.norm_q, attn.norm_k)) <= 1e-6
    assert rel_err(out, expected) > 1e-3  # and it is not the RMSNorm's result
