"""Shared helpers: tiny configurations, random inputs, error ratios."""

from __future__ import annotations

import math
import os
import shutil

# Without a GPU, Triton kernels are tested in its interpreter. The choice is fixed when triton is first
# imported (diffusers imports it through torch._dynamo), so it is made here, before any other import.
os.environ.setdefault("TRITON_INTERPRET", "0" if shutil.which("nvidia-smi") else "1")

import pytest
import torch

from sana_video.model.presets import preset


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖, in float64."""
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def tiny_config(**overrides) -> dict:
    return preset("tiny", **overrides)


def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Perturb every parameter, so norm weights are not 1 and biases not 0 (bugs cannot hide there)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(scale * torch.randn(param.shape, generator=gen, dtype=param.dtype))
    return model.eval()


def make_inputs(
    cfg: dict,
    batch: int = 2,
    frames: int = 3,
    height: int = 8,
    width: int = 8,
    text_len: int = 6,
    *,
    padded: bool = True,
    per_token: bool = False,
    seed: int = 0,
) -> dict:
    """Model inputs: latents, text features, a text mask with padding, timesteps, guidance if needed."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg["in_channels"], frames, height, width, generator=gen)
    text = torch.randn(batch, text_len, cfg["caption_channels"], generator=gen)
    inputs = {"hidden_states": x, "encoder_hidden_states": text}
    if padded:
        lengths = torch.randint(1, text_len + 1, (batch,), generator=gen)
        lengths[0] = max(1, text_len // 2)  # at least one sample really is padded
        inputs["encoder_attention_mask"] = (torch.arange(text_len)[None] < lengths[:, None]).long()
    pt, ph, pw = cfg["patch_size"]
    tokens = (frames // pt) * (height // ph) * (width // pw)
    if per_token:
        inputs["timestep"] = torch.randint(
            0, 1000, (batch, 1, frames // pt, height // ph, width // pw), generator=gen
        )
        assert inputs["timestep"].numel() == batch * tokens
    else:
        inputs["timestep"] = torch.randint(0, 1000, (batch,), generator=gen)
    if cfg.get("guidance_embeds"):
        inputs["guidance"] = 1 + 5 * torch.rand(batch, generator=gen)
    return inputs


def num_tokens(cfg: dict, x: torch.Tensor) -> int:
    return math.prod(s // p for s, p in zip(x.shape[2:], cfg["patch_size"]))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def t2v_dir(tmp_path_factory):
    """A tiny random text-to-video pipeline saved by diffusers' save_pretrained."""
    from tests.pipelines.components import save_diffusers_pipeline

    return save_diffusers_pipeline(tmp_path_factory.mktemp("t2v"), "t2v")


@pytest.fixture(scope="session")
def i2v_dir(tmp_path_factory):
    from tests.pipelines.components import save_diffusers_pipeline

    return save_diffusers_pipeline(tmp_path_factory.mktemp("i2v"), "i2v")


@pytest.fixture(scope="session")
def long_dir(tmp_path_factory):
    """A tiny pipeline whose RoPE table allows long rollouts (256 latent frames)."""
    from tests.pipelines.components import save_diffusers_pipeline

    return save_diffusers_pipeline(tmp_path_factory.mktemp("long"), "t2v", rope_max_seq_len=256)
