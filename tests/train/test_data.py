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
    # In range, except quick objects along an axis, made smaller to keep their path inside the frame.
    assert all(0.15 <= o.size <= 0.2 or (o.speed == "quickly" and o.size < 0.15 and " " not in o.direction)
               for s in specs for o in s.objects)  # fmt: skip
    with pytest.raises(ValueError, match="backgrounds"):
        ShapesDataset(backgrounds=("wavy",))


def test_objects_are_drawn_as_on_every_pixel_of_every_frame():
    """render() composites each object only inside the box its path sweeps; a naive per-frame, whole-frame
    composite of the same shapes must give the same clip (nothing of any shape is cut off)."""
    import math

    import numpy as np

    from sana_video.train.data import COLOURS, DIRECTIONS, SPEEDS, _mask

    data = ShapesDataset(length=40, frames=6, height=40, width=48, seed=7, sizes=(0.05, 0.3),
                         backgrounds=("plain",))  # fmt: skip
    for i in range(40):
        spec = data.spec(i)
        clip = render(spec, 6, 40, 48)
        ys, xs = np.meshgrid((np.arange(40) + 0.5) / 40, (np.arange(48) + 0.5) / 48, indexing="ij")
        expected = np.full((6, 40, 48, 3), spec.background_shade)
        for obj in spec.objects:
            dx, dy = DIRECTIONS[obj.direction]
            for f in range(6):
                travel = SPEEDS[obj.speed] * f / 5 / math.hypot(dx, dy)
                cx, cy = obj.start[0] + dx * travel, obj.start[1] + dy * travel
                alpha = _mask(obj.shape, (xs - cx) / obj.size, (ys - cy) / obj.size, 1.5 / (obj.size * 48))
                expected[f] += alpha[..., None] * (np.asarray(COLOURS[obj.colour]) - expected[f])
        expected = torch.from_numpy(expected).permute(3, 0, 1, 2).float() * 2 - 1
        torch.testing.assert_close(clip, expected, atol=1e-4, rtol=0)  # float32 vs float64


@pytest.mark.parametrize("sizes", [(0.09, 0.14), (0.12, 0.18), (0.2, 0.25)])
def test_every_object_stays_inside_the_frame(sizes):
    """Over the whole clip each object's extent (its radius) stays inside [0, 1]² — also large objects
    moving quickly along an axis (those used to start at the centre and leave the frame)."""
    import math

    from sana_video.train.data import DIRECTIONS, SPEEDS

    data = ShapesDataset(length=300, frames=5, sizes=sizes)
    for i in range(300):
        for obj in data.spec(i).objects:
            dx, dy = DIRECTIONS[obj.direction]
            travel = SPEEDS[obj.speed] / math.hypot(dx, dy)
            for x0, d in ((obj.start[0], dx), (obj.start[1], dy)):
                for x in (x0, x0 + d * travel):
                    assert obj.size <= x <= 1 - obj.size, (i, obj)


def test_short_captions_leave_out_speed_and_background_independently():
    full = ShapesDataset(length=200, frames=1, height=16, width=16, seed=3, max_objects=1)
    short = ShapesDataset(
        length=200, frames=1, height=16, width=16, seed=3, max_objects=1, short_captions=0.5
    )
    seen = set()
    for i in range(200):
        spec, caption = full.spec(i), short[i][1]
        assert full[i][1] == spec.caption()
        o = spec.objects[0]
        forms = {(s, b): f"a {o.colour} {o.shape} moving {o.direction}" + (f" {o.speed}" if s else "")
                 + (f" on a {spec.background} background" if b else "") for s in (True, False) for b in (True, False)}  # fmt: skip
        kept = [form for form, text in forms.items() if text == caption]
        assert len(kept) == 1, caption
        seen.add(kept[0])
    assert seen == {(True, True), (True, False), (False, True), (False, False)}
    everything_dropped = ShapesDataset(length=5, frames=1, height=16, width=16, seed=3, short_captions=1.0)
    assert all("background" not in everything_dropped[i][1] for i in range(5))
    with pytest.raises(ValueError, match="probability"):
        ShapesDataset(short_captions=1.5)
