"""The meaning checker, on rendered clips whose motion is known: right when right, wrong when wrong."""

from __future__ import annotations

import numpy as np
import pytest

from sana_video.train.data import BACKGROUNDS, DIRECTIONS, ClipSpec, ObjectSpec, render
from sana_video.train.evaluate import moves

OPPOSITE = {"right": "left", "left": "right", "up": "down", "down": "up",
            "up and to the right": "down and to the left", "down and to the left": "up and to the right",
            "up and to the left": "down and to the right", "down and to the right": "up and to the left"}  # fmt: skip


def _clip(colour, shape, direction, background="plain", speed="slowly") -> np.ndarray:
    dx, dy = DIRECTIONS[direction]
    start = (0.5 - 0.15 * np.sign(dx), 0.5 - 0.15 * np.sign(dy))
    spec = ClipSpec((ObjectSpec(colour, shape, direction, speed, start, 0.1),), background, 0.3)
    return ((render(spec, 17, 64, 64).permute(1, 2, 3, 0).numpy() + 1) / 2).clip(0, 1)


@pytest.mark.parametrize("direction", list(DIRECTIONS))
@pytest.mark.parametrize("background", BACKGROUNDS)
def test_known_motion_is_recognised_and_the_opposite_is_not(direction, background):
    video = _clip("red", "star", direction, background)
    assert moves(video, "red", direction)
    assert not moves(video, "red", OPPOSITE[direction])
    assert not moves(video, "blue", direction)  # the colour must be there too


def test_a_still_object_does_not_move():
    video = _clip("green", "circle", "right")
    still = np.repeat(video[:1], len(video), axis=0)
    assert not moves(still, "green", "right")
