"""An independent float64 SANA-Video forward pass, written from SPEC.md §2 and a state dict.

It shares no code with the package and takes other routes on purpose: attention in its quadratic form
with an explicit (block-causal) mask, RoPE as complex multiplication, the 1×1 and temporal convolutions
as real convolutions. `chunks` (latent frames per chunk) makes attention block-causal: a token sees its
own chunk and earlier ones; the temporal conv of a chunk's last frame sees zeros on its right.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def forward(sd, cfg, x, text, timestep, mask=None, guidance=None, chunks=None):
    p = {k: v.double() for k, v in sd.items()}
    batch, _, frames, height, width = x.shape
    pt, ph, pw = cfg["patch_size"]
    heads, head_dim = cfg["num_attention_heads"], cfg["attention_head_dim"]
    dim = heads * head_dim
    grid = (frames // pt, height // ph, width // pw)
    n = math.prod(grid)

    # Patchify.
    h = F.conv3d(x.double(), p["patch_embedding.weight"], p["patch_embedding.bias"], stride=(pt, ph, pw))
    h = h.flatten(2).transpose(1, 2)  # [B, N, D]

    # Timestep (and guidance) embedding.
    def linear(v, name, bias=True):
        return F.linear(v, p[f"{name}.weight"], p[f"{name}.bias"] if bias else None)

    def sinusoid(t):
        # SPEC §2.2: the angles t·f_i are formed in fp32 (up to ~1000 rad, so their rounding is visible
        # at the 1e-6 level); everything after that in float64.
        freqs = torch.exp(-math.log(10000.0) * torch.arange(128, dtype=torch.float32) / 128)
        angles = (t.float()[:, None] * freqs[None]).double()
        return torch.cat([angles.cos(), angles.sin()], dim=-1)

    def mlp(v, name):
        return linear(F.silu(linear(v, f"{name}.linear_1")), f"{name}.linear_2")

    t = torch.as_tensor(timestep).flatten().double()
    if t.numel() == 1:
        t = t.expand(batch)
    if cfg.get("guidance_embeds"):
        e = mlp(sinusoid(t), "time_embed.timestep_embedder").view(batch, -1, dim)
        g = torch.as_tensor(guidance).flatten().double().expand(batch)
        e = e + mlp(sinusoid(g), "time_embed.guidance_embedder").view(batch, 1, dim)
    else:
        e = mlp(sinusoid(t), "time_embed.emb.timestep_embedder").view(batch, -1, dim)
    mod = linear(F.silu(e), "time_embed.linear")  # [B, T, 6D]

    # Captions.
    def rms(v, weight, eps=1e-5):
        return v / torch.sqrt(v.pow(2).mean(-1, keepdim=True) + eps) * weight

    y = linear(
        F.gelu(linear(text.double(), "caption_projection.linear_1"), approximate="tanh"),
        "caption_projection.linear_2",
    )
    y = rms(y, p["caption_norm.weight"])
    bias = None if mask is None else ((1 - mask.double()) * -10000.0)[:, None, None, :]

    # RoPE: complex rotation per channel pair; positions (f, row, col) of each token.
    side = 2 * (head_dim // 6)
    axis_dims = (head_dim - 2 * side, side, side)
    f_idx, r_idx, c_idx = torch.meshgrid(*(torch.arange(s) for s in grid), indexing="ij")
    angles = []
    for pos, d in zip((f_idx, r_idx, c_idx), axis_dims):
        freqs = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
        angles.append(pos.reshape(-1, 1).double() * freqs[None])
    rotation = torch.polar(torch.ones(n, head_dim // 2, dtype=torch.float64), torch.cat(angles, dim=1))

    def rope(v):  # [B, N, H, d]
        c = torch.view_as_complex(v.reshape(*v.shape[:-1], -1, 2).contiguous()) * rotation[None, :, None]
        return torch.view_as_real(c).flatten(-2)

    # Which chunk each frame / token belongs to.
    chunks = chunks or [grid[0]]
    assert sum(chunks) == grid[0]
    frame_chunk = torch.repeat_interleave(torch.arange(len(chunks)), torch.tensor(chunks))
    token_chunk = frame_chunk[f_idx.reshape(-1)]
    visible = (token_chunk[None, :] <= token_chunk[:, None]).double()  # [query, key]

    block_eps = cfg.get("norm_eps", 1e-6)

    def norm(v, eps):
        return F.layer_norm(v, (dim,), eps=eps)

    for i in range(cfg["num_layers"]):
        b = f"transformer_blocks.{i}"
        shift1, scale1, gate1, shift2, scale2, gate2 = (
            p[f"{b}.scale_shift_table"] + mod.view(batch, -1, 6, dim)
        ).unbind(2)

        # Linear self-attention, quadratic form with the block-causal mask.
        a = norm(h, block_eps) * (1 + scale1) + shift1
        q = linear(a, f"{b}.attn1.to_q", cfg.get("attention_bias", False))
        k = linear(a, f"{b}.attn1.to_k", cfg.get("attention_bias", False))
        v = linear(a, f"{b}.attn1.to_v", cfg.get("attention_bias", False))
        if cfg.get("qk_norm"):
            q, k = rms(q, p[f"{b}.attn1.norm_q.weight"]), rms(k, p[f"{b}.attn1.norm_k.weight"])
        q, k, v = (z.view(batch, n, heads, head_dim) for z in (q, k, v))
        q, k = q.relu(), k.relu()
        qr, kr = rope(q), rope(k)
        numerator = torch.einsum("bihd,bjhd,ij,bjhe->bihe", qr, kr, visible, v)
        denominator = torch.einsum("bihd,bjhd,ij->bih", q, k, visible)
        o = (numerator / (denominator + 1e-15)[..., None]).reshape(batch, n, dim)
        h = h + gate1 * linear(o, f"{b}.attn1.to_out.0")

        # Cross-attention (softmax), on the raw residual stream.
        cq = linear(h, f"{b}.attn2.to_q")
        ck, cv = linear(y, f"{b}.attn2.to_k"), linear(y, f"{b}.attn2.to_v")
        if cfg.get("qk_norm"):
            cq, ck = rms(cq, p[f"{b}.attn2.norm_q.weight"]), rms(ck, p[f"{b}.attn2.norm_k.weight"])
        ch = cfg["num_cross_attention_heads"]
        cq, ck, cv = (z.view(batch, -1, ch, z.shape[-1] // ch).transpose(1, 2) for z in (cq, ck, cv))
        scores = cq @ ck.transpose(-1, -2) / math.sqrt(cq.shape[-1])
        if bias is not None:
            scores = scores + bias
        o = (scores.softmax(-1) @ cv).transpose(1, 2).reshape(batch, n, -1)
        h = h + linear(o, f"{b}.attn2.to_out.0")

        # Mix-FFN with real convolutions.
        a = norm(h, block_eps)
        if cfg.get("norm_elementwise_affine"):
            a = a * p[f"{b}.norm2.weight"] + p[f"{b}.norm2.bias"]
        a = a * (1 + scale2) + shift2
        img = a.view(batch * grid[0], grid[1], grid[2], dim).permute(0, 3, 1, 2)
        img = F.silu(F.conv2d(img, p[f"{b}.ff.conv_inverted.weight"], p[f"{b}.ff.conv_inverted.bias"]))
        img = F.conv2d(
            img, p[f"{b}.ff.conv_depth.weight"], p[f"{b}.ff.conv_depth.bias"], padding=1, groups=img.shape[1]
        )
        u, gate = img.chunk(2, dim=1)
        img = F.conv2d(u * F.silu(gate), p[f"{b}.ff.conv_point.weight"])
        seq = img.view(batch, grid[0], dim, -1)  # [B, F, D, P]
        w_t = p[f"{b}.ff.conv_temp.weight"][..., 0]  # [D, D, 3]
        temporal = torch.zeros_like(seq)
        for fi in range(grid[0]):
            temporal[:, fi] += torch.einsum("oi,bip->bop", w_t[..., 1], seq[:, fi])
            if fi > 0:  # the left neighbour is always visible (from the state across a chunk boundary)
                temporal[:, fi] += torch.einsum("oi,bip->bop", w_t[..., 0], seq[:, fi - 1])
            if fi + 1 < grid[0] and frame_chunk[fi + 1] == frame_chunk[fi]:  # the right one only in-chunk
                temporal[:, fi] += torch.einsum("oi,bip->bop", w_t[..., 2], seq[:, fi + 1])
        ff = (seq + temporal).permute(0, 1, 3, 2).reshape(batch, n, dim)
        h = h + gate2 * ff

    shift, scale = (p["scale_shift_table"] + e[:, :, None]).unbind(2)
    h = F.linear(norm(h, 1e-6) * (1 + scale) + shift, p["proj_out.weight"], p["proj_out.bias"])
    h = h.view(batch, *grid, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return h.reshape(batch, -1, frames, height, width)
