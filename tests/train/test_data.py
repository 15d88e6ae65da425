"""The shapes dataset: deterministic clips, and crops that are exactly windows of the whole frame."""

from __future__ import annotations

import pytest
import torch

from sana_video.train.data import ShapesDataset, render


def test_clips_are_a_function_of_seed_and_index():
    a, b = (
        ShapesDataset(frames=5, height=32, width=32, seed=4),
        ShapesDataset(frames=5, height=32, width=32, seed=4),
    )
    assert torch.equal(a[3][0], b[3][0]) and a[3][1] == b[3][1]
    assert not torch.equal(a[3][0], a[4][0])


def test_a_crop_is_a_window_of_the_whole_frame():
    data = ShapesDataset(length=64, frames=5, height=48, width=40, seed=2, crop=24)
    checked = 0
    for i in range(64):
        spec = data.spec(i)
        if spec.background == "noisy":  # its noise is drawn for the rendered pixels only
            continue
        crop, caption = data[i]
        assert crop.shape == (3, 5, 24, 24) and caption == spec.caption()
        whole = render(spec, 5, 48, 40, seed=data.seed * 1_000_003 + i)
        hits = [(y, x) for y in range(48 - 23) for x in range(40 - 23)
                if torch.allclose(whole[:, :, y:y + 24, x:x + 24], crop, atol=1e-6)]  # fmt: skip
        assert hits, f"clip {i}: the crop is not a window of the frame"
        checked += 1
    assert checked > 30


@pytest.mark.parametrize("crop", [0, 49])
def test_bad_crop_is_refused(crop):
    with pytest.raises(ValueError, match="crop"):
        ShapesDataset(height=48, width=64, crop=crop)


def test_backgrounds_and_sizes_can_be_narrowed():
    data = ShapesDataset(
        length=40, frames=3, height=32, width=32, backgrounds=("plain", "striped"), sizes=(0.15, 0.2)
    )
    specs = [data.spec(i) for i in range(40)]
    assert {s.background for s in specs} == {"plain", "striped"}
    assert all(0.15 <= o.size <= 0.2 for s in specs for o in s.objects)
    with pytest.raises(ValueError, match="backgrounds"):
        ShapesDataset(backgrounds=("wavy",))
