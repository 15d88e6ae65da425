"""Shapes the benchmarks share: the text encoder they build with random weights."""

from __future__ import annotations


def gemma_config(smoke: bool, width: int = 2304):
    """A Gemma2Config of Gemma-2-2B's shape (its 256k-word embedding is only looked up, so a 64-word
    vocabulary stands in), or with `smoke` a one-layer model of `width` for CPU checks of the scripts."""
    from transformers import Gemma2Config

    if smoke:
        shape = dict(hidden_size=width, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                     num_key_value_heads=1, head_dim=8)  # fmt: skip
    else:
        shape = dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
                     num_key_value_heads=4, head_dim=256)  # fmt: skip
    return Gemma2Config(vocab_size=64, **shape)
