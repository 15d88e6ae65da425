"""LoRA fine-tuning of a pipeline's transformer on a folder of the user's videos."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from sana_video.train.loop import TrainConfig, TrainResult, train
from sana_video.train.objectives import TransformerObjective

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")


class VideoFolder(torch.utils.data.Dataset):
    """Videos in a folder, each with a caption in a .txt file of the same name: resized to
    height × width and cut to `frames` frames from the start (shorter videos are refused)."""

    def __init__(self, folder: str | os.PathLike, frames: int, height: int, width: int):
        self.folder, self.frames, self.height, self.width = Path(folder), frames, height, width
        if not self.folder.is_dir():
            raise ValueError(f"{self.folder} is not a folder")
        self.items = []
        for video in sorted(p for p in self.folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES):
            caption = video.with_suffix(".txt")
            if not caption.exists():
                raise ValueError(f"{video.name} has no caption: put it in {caption.name}")
            self.items.append((video, caption.read_text().strip()))
        if not self.items:
            raise ValueError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {self.folder}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        from sana_video.video import read_video

        path, caption = self.items[index]
        frames, _ = read_video(path)
        if len(frames) < self.frames:
            raise ValueError(f"{path.name} has {len(frames)} frames; training takes {self.frames}")
        video = (
            torch.from_numpy(frames[: self.frames]).permute(3, 0, 1, 2).float() / 127.5 - 1
        )  # [3, F, H, W]
        video = F.interpolate(
            video, size=(self.height, self.width), mode="bilinear", antialias=True, align_corners=False
        )
        return video.clamp(-1, 1), caption


def finetune_lora(
    pipe,
    dataset: torch.utils.data.Dataset,
    config: TrainConfig,
    output_dir: str | os.PathLike,
    *,
    rank: int = 16,
    alpha: float | None = None,
    targets: list[str] = LORA_TARGETS,
    adapter_name: str = "default",
) -> TrainResult:
    """Add a LoRA adapter to the transformer, train only it, and save it in the diffusers/PEFT format
    (`output_dir/pytorch_lora_weights.safetensors`, loadable with `pipe.load_lora_weights`)."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = pipe.transformer
    transformer.requires_grad_(False)
    transformer.add_adapter(
        LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=targets, init_lora_weights=True),
        adapter_name,
    )
    lora_params = [p for n, p in transformer.named_parameters() if "lora_" in n]
    for p in lora_params:
        p.requires_grad_(True)
    objective = TransformerObjective(pipe, chunked_fraction=0.0)
    result = train(transformer, objective, dataset, config, output_dir, parameters=lora_params)
    type(pipe).save_lora_weights(
        output_dir, transformer_lora_layers=get_peft_model_state_dict(transformer, adapter_name=adapter_name)
    )
    return result
