"""One training loop for every model here (VAE, transformer, LoRA); each brings its loss.

Deterministic and resumable: the batch of step s is a fixed function of s, all randomness comes from one
generator saved with the checkpoint, and a resumed run continues with exactly the losses it would have had.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from sana_video._files import atomic_torch_save

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup: int = 50  # steps of linear warm-up, then cosine decay to 10 % of lr
    grad_clip: float = 1.0
    ema_decay: float | None = 0.999  # None: no EMA
    checkpoint_every: int = 500
    seed: int = 0
    bf16: bool = True  # autocast on CUDA; the weights stay fp32
    num_workers: int = 0
    progress: bool = True
    # Stop at this step of the `steps`-step schedule (checkpointed; resuming without it goes on).
    stop_after: int | None = None


_RUN_ONLY = {"num_workers", "progress", "stop_after"}  # settings a resumed run may change


def _schedule_settings(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in _RUN_ONLY}


@dataclass
class TrainResult:
    history: list[float] = field(default_factory=list)  # the loss of every step
    ema: dict[str, torch.Tensor] | None = None  # averaged weights of the trained parameters


class _StepBatches(torch.utils.data.Sampler):
    """Batch of step s: dataset items s·B … s·B + B − 1 (modulo its length)."""

    def __init__(self, first_step: int, steps: int, batch_size: int, length: int):
        self.first_step, self.steps, self.batch_size, self.length = first_step, steps, batch_size, length

    def __iter__(self):
        for step in range(self.first_step, self.steps):
            yield [(step * self.batch_size + i) % self.length for i in range(self.batch_size)]

    def __len__(self) -> int:
        return self.steps - self.first_step


def train(
    module: torch.nn.Module,
    loss_fn: Callable[[object, torch.Generator], torch.Tensor],
    dataset: torch.utils.data.Dataset,
    config: TrainConfig,
    output_dir: str | os.PathLike,
    *,
    parameters: list[torch.nn.Parameter] | None = None,
    collate_fn=None,
) -> TrainResult:
    """Optimise `parameters` (default: all trainable ones of `module`) on `loss_fn(batch, generator)`.

    A checkpoint `output_dir/checkpoint.pt` is written every `checkpoint_every` steps and at the end; if
    one exists, training resumes from it.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if parameters is not None:
        wanted = {id(p) for p in parameters}
        named = [(n, p) for n, p in named if id(p) in wanted]
    params = [p for _, p in named]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, config))
    generator = torch.Generator().manual_seed(config.seed)
    ema = {n: p.detach().float().clone() for n, p in named} if config.ema_decay else None
    result = TrainResult(ema=ema)

    checkpoint_path, start = output_dir / "checkpoint.pt", 0
    if checkpoint_path.exists():
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        if _schedule_settings(saved["config"]) != _schedule_settings(asdict(config)):
            raise ValueError(
                f"{checkpoint_path} was written with another configuration; remove it to start over"
            )
        module.load_state_dict(saved["module"], strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        generator.set_state(saved["generator"])
        result.history = saved["history"]
        if ema is not None:
            ema.update({n: t.to(p.device) for (n, p), t in zip(named, saved["ema"].values())})
        start = saved["step"]
        logger.info("resuming from step %d of %d", start, config.steps)

    end = min(config.steps, config.stop_after or config.steps)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=_StepBatches(start, max(start, end), config.batch_size, len(dataset)),
        num_workers=config.num_workers,
        collate_fn=collate_fn,
        persistent_workers=False,
    )
    device = params[0].device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if config.bf16 and device.type == "cuda" else None
    module.train()
    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=start, disable=not config.progress, desc="train", unit="step")
    step = start
    for batch in loader:
        with autocast if autocast is not None else contextlib.nullcontext():
            loss = loss_fn(batch, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        schedule.step()
        if ema is not None:
            with torch.no_grad():
                for name, p in named:
                    ema[name].lerp_(p.detach().float(), 1 - config.ema_decay)
        step += 1
        result.history.append(loss.item())
        bar.update()
        bar.set_postfix(loss=f"{result.history[-1]:.4f}")
        if step % config.checkpoint_every == 0 or step == end:
            atomic_torch_save(
                {
                    "config": asdict(config),
                    "step": step,
                    "module": {n: t for n, t in module.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "generator": generator.get_state(),
                    "history": result.history,
                    "ema": ema,
                },
                checkpoint_path,
            )
    bar.close()
    module.eval()
    return result


def apply_ema(module: torch.nn.Module, ema: dict[str, torch.Tensor]) -> None:
    """Copy averaged weights into the module."""
    params = dict(module.named_parameters())
    with torch.no_grad():
        for name, value in ema.items():
            params[name].copy_(value.to(params[name].dtype))


def _lr_factor(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
