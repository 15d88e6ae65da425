"""The meaning checker, on rendered clips whose motion is known: right when right, wrong when wrong."""

from __future__ import annotations

import numpy as np
import pytest

from sana_video.train.data import BACKGROUNDS, COLOURS, DIRECTIONS, HELD_OUT, ClipSpec, ObjectSpec, render
from sana_video.train.evaluate import (
    GRID_PAIRS,
    OPPOSITE,
    colour_error,
    meaning_grid,
    meaning_scores,
    moves,
    prompt_for,
    psnr,
    reconstruction_colour_errors,
)


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


def test_colour_error_and_psnr():
    video = _clip("orange", "square", "up")
    assert colour_error(video, "orange") < 0.05 and colour_error(video, "blue") == float("inf")
    assert psnr(video, video) == float("inf") and abs(psnr(video, video + 0.1) - 20.0) < 1e-6


def test_meaning_scores_follow_the_generated_motion():
    """A generator that renders what it is asked (or the opposite) is scored right (or wrong)."""
    from sana_video.train.data import DIRECTIONS as D

    def faithful(prompt, seed):
        words = prompt.split()
        direction = next(d for d in sorted(D, key=len, reverse=True) if f"moving {d} " in prompt)
        return _clip(words[1], words[2], direction)

    def contrary(prompt, seed):
        direction = next(d for d in sorted(D, key=len, reverse=True) if f"moving {d} " in prompt)
        return _clip(prompt.split()[1], prompt.split()[2], OPPOSITE[direction])

    cases = [("red", "circle", "right"), ("cyan", "circle", "up and to the left")]
    assert prompt_for("red", "circle", "right") == "a red circle moving right quickly on a plain background"
    good, bad = meaning_scores(faithful, cases, [0, 1]), meaning_scores(contrary, cases, [0])
    assert all(r["moves"] and not r["moves_opposite"] for r in good)
    assert all(r["moves_opposite"] and not r["moves"] for r in bad)


def test_reconstruction_colour_errors_find_a_lost_colour_channel():
    """An exact autoencoder keeps every colour; one that replaces green by the mean of red and blue moves
    each colour by |G - (R + B) / 2| exactly (green (0.1, 0.8, 0.2): 0.65)."""
    exact = reconstruction_colour_errors(lambda clip: clip, size=48, frames=3)
    assert set(exact) == set(COLOURS) and max(exact.values()) < 1e-6

    def green_lost(clip):
        out = clip.clone()
        out[1] = (clip[0] + clip[2]) / 2
        return out

    errors = reconstruction_colour_errors(green_lost, size=48, frames=3)
    for name, (r, g, b) in COLOURS.items():
        assert errors[name] == pytest.approx(abs(g - (r + b) / 2), abs=1e-5)


def test_the_meaning_grid_spreads_every_pair_over_the_directions():
    whole = meaning_grid()
    assert sorted(whole) == sorted((c, s, d) for c, s in GRID_PAIRS for d in DIRECTIONS)  # each case once
    assert set(GRID_PAIRS) >= HELD_OUT and len(set(GRID_PAIRS)) == 9
    part = meaning_grid(3)
    assert set(part) <= set(whole) and len(part) == 27
    for pair in GRID_PAIRS:  # three different directions a pair
        assert len({d for c, s, d in part if (c, s) == pair}) == 3
    assert {d for *_, d in part} == set(DIRECTIONS)  # the part still asks for every direction
    with pytest.raises(ValueError, match="directions_per_pair"):
        meaning_grid(0)
