"""Clips encoded once: the transformer trains on normalized VAE latents kept on its device.

Rendering a 33×96×96 clip and encoding it costs far more than the small transformer's step on it, so
the small model renders and encodes a fixed set of clips once and draws its batches from them (each
batch still gets fresh noise, timesteps and text dropout).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


class LatentClips(torch.utils.data.Dataset):
    """(latents [C, F, h, w], caption) pairs; a batch of indices is fetched in one indexing operation
    (use `collate_fn=LatentClips.collate` in the DataLoader)."""

    def __init__(self, latents: torch.Tensor, captions: list[str]):
        if len(latents) != len(captions):
            raise ValueError(f"{len(latents)} latents but {len(captions)} captions")
        self.latents, self.captions = latents, list(captions)

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        return self.latents[index], self.captions[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, list[str]]:
        picked = torch.as_tensor(indices, device=self.latents.device)
        return self.latents[picked], [self.captions[i] for i in indices]

    @staticmethod
    def collate(batch):
        return batch  # __getitems__ already made the batch


@torch.no_grad()
def encode_clips(vae, dataset, count: int, *, batch_size: int = 32, num_workers: int = 0, normalize=None,
                 dtype: torch.dtype = torch.bfloat16, progress: bool = True) -> LatentClips:  # fmt: skip
    """Encode clips 0 … count − 1 of `dataset` with `vae` (posterior means, as the pipelines encode) and
    keep them on the VAE's device in `dtype`. `normalize(latents)` maps them to what the transformer sees."""
    from tqdm.auto import tqdm

    if count < 1 or count > len(dataset):
        raise ValueError(f"count must be in 1..{len(dataset)}, got {count}")
    device = vae.device
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, range(count)), batch_size=batch_size, num_workers=num_workers
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
    parts, captions = [], []
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # the same few conv shapes, many times
    try:
        for videos, texts in tqdm(loader, desc="encode clips", unit="batch", disable=not progress):
            with autocast if autocast is not None else contextlib.nullcontext():
                z = vae.encode(videos.to(device, vae.dtype)).latent_dist.mode().float()
            parts.append((normalize(z) if normalize else z).to(dtype))
            captions.extend(texts)
    finally:
        torch.backends.cudnn.benchmark = benchmark
    return LatentClips(torch.cat(parts), captions)


def cached_clips(path: str | os.PathLike, key: dict, build, device="cpu") -> LatentClips:
    """`build()`'s clips, saved at `path` with `key` and loaded from there (onto `device`) while the key
    matches."""
    path = Path(path)
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=False)
        if saved["key"] == key:
            return LatentClips(saved["latents"].to(device), saved["captions"])
        logger.info("%s was made with other settings; encoding again", path)
    clips = build()
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "latents": clips.latents.cpu(), "captions": clips.captions}, tmp)
    os.replace(tmp, path)
    return clips
