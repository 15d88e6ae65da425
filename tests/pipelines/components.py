"""Tiny random pipeline components, built offline, saved with diffusers' own save_pretrained."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLWan,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
)
from diffusers import SanaImageToVideoPipeline as DiffusersI2V
from diffusers import SanaVideoPipeline as DiffusersT2V
from diffusers import SanaVideoTransformer3DModel as DiffusersTransformer
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import Gemma2Config, Gemma2Model, PreTrainedTokenizerFast

from tests.conftest import randomize, tiny_config

WORDS = [
    "a",
    "an",
    "the",
    "red",
    "green",
    "blue",
    "yellow",
    "white",
    "black",
    "circle",
    "square",
    "triangle",
    "star",
    "cat",
    "dog",
    "moves",
    "moving",
    "left",
    "right",
    "up",
    "down",
    "slowly",
    "quickly",
    "on",
    "plain",
    "background",
    "motion",
    "score",
    ":",
    ".",
    ",",
    "user",
    "prompt",
    "enhanced",
    "video",
]
SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>"]  # Gemma's ids: pad 0, eos 1, bos 2


def make_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer that adds BOS, like Gemma's; unknown words map to <unk>."""
    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def make_components(seed: int = 0, **transformer_overrides) -> dict:
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    text_encoder = Gemma2Model(
        Gemma2Config(
            head_dim=16,
            hidden_size=8,
            intermediate_size=64,
            num_attention_heads=2,
            num_hidden_layers=1,
            num_key_value_heads=2,
            vocab_size=len(SPECIAL) + len(WORDS),
            max_position_embeddings=8192,
            attn_implementation="eager",
        )
    )
    transformer = randomize(
        DiffusersTransformer(**tiny_config(caption_channels=8, **transformer_overrides)), seed=seed
    )
    return {
        "tokenizer": make_tokenizer(),
        "text_encoder": text_encoder.eval(),
        "vae": vae.eval(),
        "transformer": transformer,
    }


def t2v_scheduler() -> DPMSolverMultistepScheduler:
    """The official text-to-video scheduler configuration."""
    return DPMSolverMultistepScheduler(
        flow_shift=8.0, use_flow_sigmas=True, prediction_type="flow_prediction"
    )


def i2v_scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(shift=8.0)


def save_diffusers_pipeline(path: Path, kind: str = "t2v", **overrides) -> Path:
    components = make_components(**overrides)
    if kind == "t2v":
        DiffusersT2V(**components, scheduler=t2v_scheduler()).save_pretrained(path)
    else:
        DiffusersI2V(**components, scheduler=i2v_scheduler()).save_pretrained(path)
    return path
