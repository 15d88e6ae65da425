"""Named transformer configurations (STYLE habit 9). Values are the official checkpoints' config fields."""

from __future__ import annotations

from typing import Any

# Fields shared by every SANA-Video 2B checkpoint.
_2B: dict[str, Any] = dict(
    num_attention_heads=20,
    attention_head_dim=112,
    num_layers=20,
    num_cross_attention_heads=20,
    cross_attention_head_dim=112,
    cross_attention_dim=2240,
    caption_channels=2304,  # Gemma-2-2B hidden size
    mlp_ratio=3.0,  # not diffusers' constructor default of 2.5
    attention_bias=False,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=1024,
)

PRESETS: dict[str, dict[str, Any]] = {
    # Wan2.1 VAE latents (16 channels, 8× spatial), patch 2: 480×832×81 frames -> 32,760 tokens.
    "2b-480p": dict(_2B, in_channels=16, out_channels=16, patch_size=(1, 2, 2), sample_size=30),
    # LTX-2 VAE latents (128 channels), patch 1.
    "2b-720p": dict(_2B, in_channels=128, out_channels=128, patch_size=(1, 1, 1), sample_size=22),
    # A few thousand parameters: tests, the demo, CPU experiments.
    "tiny": dict(
        in_channels=16,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=12,
        cross_attention_dim=24,
        caption_channels=16,
        mlp_ratio=2.5,
        attention_bias=False,
        sample_size=8,
        patch_size=(1, 2, 2),
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    ),
}


def preset(name: str, **overrides: Any) -> dict[str, Any]:
    """The config of a named preset, with fields overridden."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return {**PRESETS[name], **overrides}
