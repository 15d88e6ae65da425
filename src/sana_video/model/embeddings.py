"""Timestep, guidance and caption embeddings, and the 3D rotary position table."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_sinusoid(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """[M] timesteps -> [M, dim] fp32 features [cos(t·f_i), sin(t·f_i)], f_i = max_period^(-i/(dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Sinusoid(256) -> Linear -> SiLU -> Linear."""

    def __init__(self, dim: int, frequency_dim: int = 256):
        super().__init__()
        self.linear_1 = nn.Linear(frequency_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        features = timestep_sinusoid(t, self.linear_1.in_features).to(dtype)
        return self.linear_2(F.silu(self.linear_1(features)))


class _TimestepOnly(nn.Module):
    # Exists only for checkpoint key names: without guidance the official checkpoints nest the
    # embedder one level deeper (`time_embed.emb.timestep_embedder.*`).
    def __init__(self, dim: int):
        super().__init__()
        self.timestep_embedder = TimestepEmbedder(dim)


class AdaLNConditioning(nn.Module):
    """Timestep (and optional guidance) -> the embedding e [.., D] and the block modulation [.., 6D]."""

    def __init__(self, dim: int, guidance_embeds: bool):
        super().__init__()
        self.guidance_embeds = guidance_embeds
        if guidance_embeds:
            self.timestep_embedder = TimestepEmbedder(dim)
            self.guidance_embedder = TimestepEmbedder(dim)
        else:
            self.emb = _TimestepOnly(dim)
        self.linear = nn.Linear(dim, 6 * dim)

    def forward(
        self, timestep: torch.Tensor, guidance: torch.Tensor | None, batch: int, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """timestep: B or B·N values; guidance: B values. Returns ([B, T, 6D], [B, T, D]), T = 1 or N."""
        if self.guidance_embeds:
            e = self.timestep_embedder(timestep, dtype).view(batch, -1, self.linear.in_features)
            e = e + self.guidance_embedder(guidance, dtype).view(batch, 1, -1)
        else:
            e = self.emb.timestep_embedder(timestep, dtype).view(batch, -1, self.linear.in_features)
        return self.linear(F.silu(e)), e


class CaptionProjection(nn.Module):
    """Text-encoder features -> model width: Linear, GELU(tanh), Linear."""

    def __init__(self, in_features: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_features, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(y), approximate="tanh"))


class Rope3D:
    """Wan-style 3D RoPE angles: per head, channel pairs split over (frame, row, column).

    Head channels split t/h/w = d − 4⌊d/6⌋, 2⌊d/6⌋, 2⌊d/6⌋ (40/36/36 for d = 112). Along an axis of
    `dim` channels, pair j turns at frequency 10000^(−2j/dim). Tables are built in float64 and kept in
    fp32 whatever the model dtype (they are not module buffers, so `model.to(bf16)` leaves them alone).
    """

    def __init__(self, head_dim: int, max_len: int, theta: float = 10000.0):
        if head_dim % 2:
            raise ValueError(f"attention_head_dim must be even for RoPE channel pairs (got {head_dim})")
        side = 2 * (head_dim // 6)
        self.axis_dims = (head_dim - 2 * side, side, side)
        self.max_len = max_len
        positions = torch.arange(max_len, dtype=torch.float64, device="cpu")
        self._tables = []  # per axis: (cos, sin), each [max_len, dim/2] fp32
        for dim in self.axis_dims:
            freqs = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device="cpu") / dim)
            angles = torch.outer(positions, freqs)
            self._tables.append((angles.cos().float(), angles.sin().float()))
        self._on_device: dict[torch.device, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def __call__(
        self, grid: tuple[int, int, int], frame_offset: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) for tokens of a (frames, rows, cols) grid in (f, h, w) order: each [N, d/2] fp32."""
        frames, rows, cols = grid
        if frame_offset + frames > self.max_len or max(rows, cols) > self.max_len:
            raise ValueError(
                f"positions exceed the RoPE table of {self.max_len} per axis "
                f"(rope_max_seq_len): frames {frame_offset}..{frame_offset + frames - 1}, "
                f"rows {rows}, cols {cols} after patchify"
            )
        tables = self._device_tables(device)
        cos, sin = [], []
        for axis, (start, size) in enumerate(zip((frame_offset, 0, 0), grid)):
            shape = [1, 1, 1, -1]
            shape[axis] = size
            for parts, table in zip((cos, sin), tables[axis]):
                parts.append(table[start : start + size].view(shape).expand(frames, rows, cols, -1))
        pairs = sum(self.axis_dims) // 2
        return torch.cat(cos, dim=-1).reshape(-1, pairs), torch.cat(sin, dim=-1).reshape(-1, pairs)

    def _device_tables(self, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        device = torch.device(device)
        if device not in self._on_device:
            self._on_device[device] = [(c.to(device), s.to(device)) for c, s in self._tables]
        return self._on_device[device]
