"""The context that block-causal generation carries from one chunk of latent frames to the next."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sana_video._files import atomic_path
from sana_video.ops import LinearAttentionState

_FORMAT = "sana-video-state/1"


@dataclass
class LayerState:
    """One block's context: linear-attention sums and the Mix-FFN's last spatial frame."""

    attention: LinearAttentionState  # kv = Σ v k̃ᵀ [B, H, d, d], k_sum = Σ φ(k) [B, H, d]; fp32 running sums
    last_frame: torch.Tensor  # [B, P, D] model dtype: conv_temp's input at the last frame seen (P = H'·W')


@dataclass
class SanaVideoState:
    """Per-layer context of all chunks so far. Its size does not depend on how many chunks that was.

    Produced by ``model(..., return_state=True)`` and read back with ``model(..., state=state)``.
    `num_frames` is the number of latent frames the context covers, i.e. the next chunk's `frame_offset`.
    """

    layers: list[LayerState]
    num_frames: int

    @property
    def batch_size(self) -> int:
        return self.layers[0].last_frame.shape[0]

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat name -> tensor mapping (what `save` writes)."""
        out = {}
        for i, layer in enumerate(self.layers):
            out[f"layers.{i}.kv"] = layer.attention.kv
            out[f"layers.{i}.k_sum"] = layer.attention.k_sum
            out[f"layers.{i}.last_frame"] = layer.last_frame
        return out

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> SanaVideoState:
        """Move to a device. `dtype` casts only `last_frame` (it follows the model); the sums stay fp32."""

        def move(layer: LayerState) -> LayerState:
            kv, k_sum = (t.to(device) for t in layer.attention)
            return LayerState(
                LinearAttentionState(kv, k_sum), layer.last_frame.to(device=device, dtype=dtype)
            )

        return SanaVideoState([move(layer) for layer in self.layers], self.num_frames)

    def detach(self) -> SanaVideoState:
        """Cut the autograd graph (e.g. between chunks in truncated backpropagation)."""
        return SanaVideoState(
            [
                LayerState(
                    LinearAttentionState(*(t.detach() for t in layer.attention)), layer.last_frame.detach()
                )
                for layer in self.layers
            ],
            self.num_frames,
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write to a safetensors file, atomically (a temporary file, then a rename)."""
        path = Path(path)
        tensors = {name: t.detach().contiguous().cpu() for name, t in self.tensors().items()}
        metadata = {"format": _FORMAT, "num_frames": str(self.num_frames)}
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> SanaVideoState:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        if metadata.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a saved SanaVideoState (format {metadata.get('format')!r})")
        tensors = load_file(str(path), device=str(device))
        return cls.from_tensors(tensors, num_frames=int(metadata["num_frames"]))

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], num_frames: int) -> SanaVideoState:
        """Inverse of `tensors()`."""
        num_layers = len([name for name in tensors if name.endswith(".last_frame")])
        layers = [
            LayerState(
                LinearAttentionState(tensors[f"layers.{i}.kv"], tensors[f"layers.{i}.k_sum"]),
                tensors[f"layers.{i}.last_frame"],
            )
            for i in range(num_layers)
        ]
        return cls(layers, num_frames)
