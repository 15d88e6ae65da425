"""The small model's parts: a word-level tokenizer, a frozen random Gemma-2 text encoder, a small Wan VAE
and a small SANA-Video transformer — all built offline."""

from __future__ import annotations

import re

import torch

from sana_video.pipelines.text import COMPLEX_HUMAN_INSTRUCTION
from sana_video.train.data import BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES, SPEEDS

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>"]  # Gemma's ids: pad 0, eos 1, bos 2


def vocabulary(extra_text: str = "") -> list[str]:
    """Every word the shapes captions, the motion hint and the CHI use (lower case), in a fixed order."""
    text = " ".join([*COLOURS, *SHAPES, *DIRECTIONS, *SPEEDS, *BACKGROUNDS, "a and moving on background",
                     "motion score : . , 0 1 2 3 4 5 6 7 8 9 10 30", *COMPLEX_HUMAN_INSTRUCTION, extra_text])  # fmt: skip
    words = re.findall(r"\w+|[^\w\s]", text.lower())
    return SPECIAL_TOKENS + sorted(set(words) - set(SPECIAL_TOKENS))


def make_tokenizer(words: list[str] | None = None):
    """A word-level tokenizer with Gemma's special ids that prepends BOS (saves as standard files)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = words or vocabulary()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def make_text_encoder(vocab_size: int, hidden: int = 64, seed: int = 0):
    """A small Gemma-2, random and frozen: distinct words give distinct, context-mixed features."""
    from transformers import Gemma2Config, Gemma2Model

    torch.manual_seed(seed)
    config = Gemma2Config(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=4 * hidden,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, head_dim=hidden // 4,
                          max_position_embeddings=1024)  # fmt: skip
    return Gemma2Model(config).eval().requires_grad_(False)


def make_vae(latent_channels: int = 8, base_dim: int = 32, spatial: int = 4):
    """A small Wan2.1-style VAE with 4× temporal compression, like the real one, and `spatial` (4 or 8)
    spatial compression. The real one's 8× keeps a small VAE at the mean frame for thousands of steps on
    the shapes videos (docs/TRAINING.md), so the small model uses 4× with a 4×4 transformer patch: the
    same tokens per frame as 8× with 2×2."""
    from diffusers import AutoencoderKLWan

    stages = {4: [True, True], 8: [False, True, True]}  # one entry per 2× spatial downsampling
    if spatial not in stages:
        raise ValueError(f"spatial compression must be 4 or 8, got {spatial}")
    temporal = stages[spatial]
    return AutoencoderKLWan(base_dim=base_dim, z_dim=latent_channels, dim_mult=[1] + [2] * len(temporal),
                            num_res_blocks=1, temperal_downsample=temporal, scale_factor_spatial=spatial,
                            latents_mean=[0.0] * latent_channels, latents_std=[1.0] * latent_channels)  # fmt: skip


SMALL_TRANSFORMER = dict(
    num_attention_heads=5,
    attention_head_dim=32,
    num_layers=8,
    num_cross_attention_heads=5,
    cross_attention_head_dim=32,
    cross_attention_dim=160,
    mlp_ratio=2.5,
    patch_size=(1, 2, 2),
    sample_size=12,  # a 96×96 video: latent 24×24 (4× VAE), 12×12 tokens per frame
    rope_max_seq_len=1024,
)


def make_transformer(latent_channels: int, caption_channels: int, seed: int = 0, **overrides):
    from sana_video import SanaVideoTransformer3DModel

    torch.manual_seed(seed)
    return SanaVideoTransformer3DModel(in_channels=latent_channels, out_channels=latent_channels,
                                       caption_channels=caption_channels, **{**SMALL_TRANSFORMER, **overrides})  # fmt: skip
