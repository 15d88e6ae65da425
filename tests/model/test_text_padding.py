"""Text positions that are padding in every sample are cut before the blocks (a multiple of
TEXT_BUCKET kept): the same output as diffusers, which attends over every position."""

from __future__ import annotations

import pytest
import torch
from diffusers import SanaVideoTransformer3DModel as DiffusersSanaVideo

from sana_video import SanaVideoTransformer3DModel
from sana_video.model import transformer as transformer_module
from tests.conftest import make_inputs, randomize, rel_err, tiny_config


def _models():
    cfg = tiny_config(num_layers=2)
    torch.manual_seed(1)
    reference = randomize(DiffusersSanaVideo(**cfg), seed=1)
    ours = SanaVideoTransformer3DModel(**cfg).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return cfg, ours, reference


def _keys_seen(model, inputs) -> tuple[torch.Tensor, list[int]]:
    """The output, and the text length every cross-attention received."""
    seen: list[int] = []
    hooks = [
        block.attn2.register_forward_pre_hook(lambda _, args: seen.append(args[1].shape[1]))
        for block in model.transformer_blocks
    ]
    try:
        with torch.no_grad():
            return model(**inputs).sample, seen
    finally:
        for hook in hooks:
            hook.remove()


def _with_mask(cfg, text_len: int, keep: list[list[int]]) -> dict:
    inputs = make_inputs(cfg, batch=len(keep), text_len=text_len, padded=False)
    mask = torch.zeros(len(keep), text_len, dtype=torch.long)
    for row, positions in enumerate(keep):
        mask[row, positions] = 1
    inputs["encoder_attention_mask"] = mask
    return inputs


def _as_bias(inputs: dict) -> dict:
    """The same mask as an additive [B, 1, L] bias, which is never cut."""
    mask = inputs["encoder_attention_mask"]
    return {**inputs, "encoder_attention_mask": ((1 - mask.float()) * -10000.0)[:, None]}


def test_a_padded_prompt_attends_over_a_bucket_of_keys():
    """300 positions, 100 and 37 real ones (right padding, as the pipelines' tokenizer): 128 are kept."""
    cfg, ours, reference = _models()
    inputs = _with_mask(cfg, 300, [list(range(100)), list(range(37))])
    got, seen = _keys_seen(ours, inputs)
    assert seen == [128, 128]
    uncut, seen_uncut = _keys_seen(ours, _as_bias(inputs))
    assert seen_uncut == [300, 300]
    with torch.no_grad():
        expected = reference(**inputs).sample
    assert rel_err(got, uncut) <= 1e-6
    assert rel_err(got, expected) <= 1e-5


@pytest.mark.parametrize(
    "keep, kept",
    [
        ([[5, 6, 7], [8, 9]], 5),  # left and right padding, a gap between the samples' spans
        ([[0, 11], [3]], 12),  # a hole inside the span stays (masked), the span is kept whole
        ([[11], [11]], 1),  # one position
    ],
)
def test_any_padding_pattern_is_cut_exactly(monkeypatch, keep, kept):
    monkeypatch.setattr(transformer_module, "TEXT_BUCKET", 1)
    cfg, ours, reference = _models()
    inputs = _with_mask(cfg, 12, keep)
    got, seen = _keys_seen(ours, inputs)
    assert seen == [kept, kept]
    with torch.no_grad():
        expected = reference(**inputs).sample
    assert rel_err(got, _keys_seen(ours, _as_bias(inputs))[0]) <= 1e-6
    assert rel_err(got, expected) <= 1e-5


def test_a_bucket_is_kept_inside_the_text(monkeypatch):
    """Rounding up to the bucket may reach past the end: the kept window then moves back."""
    monkeypatch.setattr(transformer_module, "TEXT_BUCKET", 8)
    cfg, ours, reference = _models()
    inputs = _with_mask(cfg, 12, [[9, 10], [11]])
    got, seen = _keys_seen(ours, inputs)
    assert seen == [8, 8]
    with torch.no_grad():
        assert rel_err(got, reference(**inputs).sample) <= 1e-5


def test_an_all_padding_sample_keeps_every_key(monkeypatch):
    """A sample with no real token attends uniformly over all of them (every bias equal): cutting would
    change that, so nothing is cut."""
    monkeypatch.setattr(transformer_module, "TEXT_BUCKET", 1)
    cfg, ours, reference = _models()
    inputs = _with_mask(cfg, 12, [[2, 3], []])
    got, seen = _keys_seen(ours, inputs)
    assert seen == [12, 12]
    with torch.no_grad():
        assert rel_err(got, reference(**inputs).sample) <= 1e-5


def test_a_reused_mask_is_read_once_and_again_after_a_write(monkeypatch):
    """Reading the mask waits for the GPU, so a mask reused call after call (a pipeline's) is read once;
    written in place since, it is read again and cut by its new content (compared with diffusers)."""
    cfg, ours, reference = _models()
    inputs = _with_mask(cfg, 300, [list(range(100)), list(range(37))])
    reads = []
    tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: reads.append(1) or tolist(self))
    first, seen = _keys_seen(ours, inputs)
    again, seen_again = _keys_seen(ours, inputs)
    assert len(reads) == 1 and seen == seen_again == [128, 128]
    assert torch.equal(first, again)
    inputs["encoder_attention_mask"][0, :200] = 1  # in place: the mask's version moves on
    got, seen = _keys_seen(ours, inputs)
    assert len(reads) == 2 and seen == [256, 256]
    with torch.no_grad():
        expected = reference(**inputs).sample
    assert rel_err(got, expected) < 1e-5


def test_a_mask_made_in_inference_mode_is_read_every_call(monkeypatch):
    """Inference tensors keep no version counter: an in-place write could not be seen, so no caching."""
    cfg, ours, _ = _models()
    with torch.inference_mode():
        inputs = _with_mask(cfg, 300, [list(range(100))])
    reads = []
    tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: reads.append(1) or tolist(self))
    with torch.inference_mode():
        for _ in range(2):
            ours(**inputs)
        inputs["encoder_attention_mask"][0, :200] = 1
        _, seen = _keys_seen(ours, inputs)
    assert len(reads) == 3 and seen == [256, 256]
