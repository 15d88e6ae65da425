"""Does a generated video mean what its prompt says? Find the object by its colour, follow its centroid.

Used to check the small model (colour and motion of prompted objects), and validated on rendered clips
whose motion is known.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from sana_video.train.data import COLOURS, DIRECTIONS, HELD_OUT, ClipSpec, ObjectSpec, render


def colour_mask(frames: np.ndarray, colour: str, tolerance: float = 0.25) -> np.ndarray:
    """frames [F, H, W, 3] in [0, 1] -> [F, H, W] bool: pixels within `tolerance` (RGB distance) of the colour."""
    target = np.asarray(COLOURS[colour], dtype=np.float32)
    return np.linalg.norm(frames.astype(np.float32) - target, axis=-1) < tolerance


def centroids(frames: np.ndarray, colour: str, min_pixels: int = 4) -> np.ndarray:
    """[F, 2] (x, y) centroid of the colour's pixels per frame, in [0, 1]; NaN where too few pixels."""
    mask = colour_mask(frames, colour)
    height, width = mask.shape[1:]
    ys, xs = np.mgrid[0:height, 0:width]
    out = np.full((len(mask), 2), np.nan)
    for i, m in enumerate(mask):
        if m.sum() >= min_pixels:
            out[i] = (xs[m].mean() + 0.5) / width, (ys[m].mean() + 0.5) / height
    return out


def displacement(frames: np.ndarray, colour: str) -> np.ndarray | None:
    """Centroid movement (dx, dy) from the first to the last quarter of the frames; None if not found."""
    track = centroids(frames, colour)
    quarter = max(1, len(track) // 4)
    first, last = track[:quarter], track[-quarter:]
    if np.isnan(first).all() or np.isnan(last).all():
        return None
    return np.nanmean(last, axis=0) - np.nanmean(first, axis=0)


def moves(frames: np.ndarray, colour: str, direction: str, min_distance: float = 0.08) -> bool:
    """True if an object of `colour` is present and travels at least `min_distance` (a fraction of the
    frame) with its motion within 45° of `direction`."""
    d = displacement(frames, colour)
    if d is None or np.hypot(*d) < min_distance:
        return False
    want = np.asarray(DIRECTIONS[direction], dtype=np.float64)
    cosine = float(d @ want / (np.hypot(*d) * np.hypot(*want)))
    return cosine > np.cos(np.pi / 4)


OPPOSITE = {"right": "left", "left": "right", "up": "down", "down": "up",
            "up and to the right": "down and to the left", "down and to the left": "up and to the right",
            "up and to the left": "down and to the right", "down and to the right": "up and to the left"}  # fmt: skip


def prompt_for(
    colour: str, shape: str, direction: str, speed: str = "quickly", background: str = "plain"
) -> str:
    """A caption in the training captions' words for one object."""
    return f"a {colour} {shape} moving {direction} {speed} on a {background} background"


def colour_error(frames: np.ndarray, colour: str) -> float:
    """RGB distance between the mean colour of the object's pixels and the named colour (inf if absent)."""
    mask = colour_mask(frames, colour)
    if not mask.any():
        return float("inf")
    return float(np.linalg.norm(frames[mask].mean(axis=0) - np.asarray(COLOURS[colour])))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


# The meaning grid's colour-shape pairs: five seen in training, then the four held out of it.
GRID_PAIRS = (("red", "circle"), ("blue", "square"), ("orange", "diamond"), ("white", "star"),
              ("yellow", "triangle"), *sorted(HELD_OUT))  # fmt: skip


def meaning_grid(directions_per_pair: int = len(DIRECTIONS)) -> list[tuple[str, str, str]]:
    """(colour, shape, direction) cases: pair i of `GRID_PAIRS` with directions i, i + 3, i + 6, … (mod 8)
    of `DIRECTIONS`, so a part of the grid still spreads every pair over unlike directions; all 8 gives the
    whole grid."""
    names = list(DIRECTIONS)
    if not 1 <= directions_per_pair <= len(names):
        raise ValueError(f"directions_per_pair must be in 1..{len(names)}, got {directions_per_pair}")
    return [(colour, shape, names[(i + 3 * k) % len(names)])
            for i, (colour, shape) in enumerate(GRID_PAIRS) for k in range(directions_per_pair)]  # fmt: skip


def meaning_scores(generate, cases, seeds, speed: str = "slowly") -> list[dict]:
    """`generate(prompt, seed)` -> frames [F, H, W, 3] in [0, 1]; for each (colour, shape, direction) case
    and seed: does the object of that colour move as prompted, and does it move against the prompt."""
    rows = []
    for colour, shape, direction in cases:
        for seed in seeds:
            frames = generate(prompt_for(colour, shape, direction, speed), seed)
            rows.append({"colour": colour, "shape": shape, "direction": direction, "seed": seed,
                         "moves": moves(frames, colour, direction),
                         "moves_opposite": moves(frames, colour, OPPOSITE[direction]),
                         "displacement": displacement(frames, colour), "colour_error": colour_error(frames, colour)})  # fmt: skip
    return rows


def reconstruction_colour_errors(reconstruct, size: int = 96, frames: int = 9) -> dict[str, float]:
    """How well an autoencoder keeps each training colour: `reconstruct(clip)` maps a clip [3, F, H, W] in
    [-1, 1] to its reconstruction. For every colour, a large circle crossing a plain grey frame is
    reconstructed; the result is the RGB distance (colours in [0, 1]) between the named colour and the mean
    reconstructed colour over the circle's interior (its soft edge left out)."""
    errors = {}
    for colour in COLOURS:
        spec = ClipSpec((ObjectSpec(colour, "circle", "right", "slowly", (0.3, 0.5), 0.18),), "plain", 0.3)
        core = ClipSpec((replace(spec.objects[0], size=0.12),), "plain", 0.3)  # the interior, inside the edge
        clip = render(spec, frames, size, size)
        inside = (render(core, frames, size, size) - clip).abs().amax(0) < 1e-4
        inside &= (clip - (2 * torch.tensor(COLOURS[colour]) - 1)[:, None, None, None]).abs().amax(0) < 1e-4
        with torch.no_grad():
            out = reconstruct(clip).float()
        mean = ((out.clamp(-1, 1) + 1) / 2)[:, inside].mean(dim=1).cpu().numpy()
        errors[colour] = float(np.linalg.norm(mean - np.asarray(COLOURS[colour])))
    return errors
