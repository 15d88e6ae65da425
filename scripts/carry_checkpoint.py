"""Shrink a training checkpoint to carry it between lent GPU machines, and restore it.

    python scripts/carry_checkpoint.py pack    outputs/shapes/.work/transformer/checkpoint.pt slim.pt
    python scripts/carry_checkpoint.py unpack  slim.pt outputs/shapes/.work/transformer/checkpoint.pt

The device tool carries at most 64 MiB; the small model's checkpoint is 66.7 MB (weights, EMA and Adam's
two moments, all fp32). `pack` stores Adam's moments in bf16 (48 MB); `unpack` turns them back into
fp32. The weights and the EMA stay exact, so a resumed run differs from an uninterrupted one only by the
moments' rounding (2⁻⁹ relative).
"""

from __future__ import annotations

import sys

import torch


def _cast_moments(checkpoint: dict, dtype: torch.dtype) -> dict:
    for state in checkpoint["optimizer"]["state"].values():
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key] = state[key].to(dtype)
    return checkpoint


def main() -> None:
    action, source, target = sys.argv[1:4]
    if action not in ("pack", "unpack"):
        raise SystemExit(f"usage: {sys.argv[0]} pack|unpack SOURCE TARGET (got {action!r})")
    checkpoint = torch.load(source, map_location="cpu", weights_only=False)
    torch.save(_cast_moments(checkpoint, torch.bfloat16 if action == "pack" else torch.float32), target)


if __name__ == "__main__":
    main()
