"""Does a generated video mean what its prompt says? Find the object by its colour, follow its centroid.

Used to check the small model (colour and motion of prompted objects), and validated on rendered clips
whose motion is known.
"""

from __future__ import annotations

import numpy as np

from sana_video.train.data import COLOURS, DIRECTIONS


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
