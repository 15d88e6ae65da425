"""Synthetic training videos ("shapes"): coloured shapes moving over plain or textured backgrounds,
with captions. Every clip is a pure function of (seed, index), generated on the fly."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.8, 0.2),
    "blue": (0.15, 0.3, 0.95),
    "yellow": (0.95, 0.9, 0.1),
    "purple": (0.6, 0.15, 0.8),
    "cyan": (0.1, 0.85, 0.9),
    "orange": (1.0, 0.55, 0.05),
    "white": (0.97, 0.97, 0.97),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond")
DIRECTIONS: dict[str, tuple[float, float]] = {  # (dx, dy) in image coordinates (y grows downwards)
    "right": (1, 0),
    "left": (-1, 0),
    "up": (0, -1),
    "down": (0, 1),
    "up and to the right": (1, -1),
    "up and to the left": (-1, -1),
    "down and to the right": (1, 1),
    "down and to the left": (-1, 1),
}
SPEEDS = {"slowly": 0.35, "quickly": 0.7}  # distance travelled over the clip, as a fraction of the frame
BACKGROUNDS = ("plain", "striped", "checkered", "noisy")
# (colour, shape) pairs never shown in training: the model must compose them from words it knows.
HELD_OUT = {("green", "triangle"), ("yellow", "star"), ("purple", "square"), ("cyan", "circle")}


@dataclass(frozen=True)
class ObjectSpec:
    colour: str
    shape: str
    direction: str
    speed: str
    start: tuple[float, float]  # centre at the first frame, in [0, 1]²
    size: float  # radius, as a fraction of the frame

    def phrase(self, speed: bool = True) -> str:
        return f"a {self.colour} {self.shape} moving {self.direction}" + (f" {self.speed}" if speed else "")


@dataclass(frozen=True)
class ClipSpec:
    objects: tuple[ObjectSpec, ...]
    background: str
    background_shade: float

    def caption(self, speed: bool = True, background: bool = True) -> str:
        """The full caption; without `speed` or `background` as people write prompts ("a red circle
        moving right")."""
        things = " and ".join(o.phrase(speed) for o in self.objects)
        return f"{things} on a {self.background} background" if background else things


def sample_spec(rng: np.random.Generator, *, max_objects: int = 3, allow_held_out: bool = False,
                backgrounds: tuple[str, ...] = BACKGROUNDS, sizes: tuple[float, float] = (0.09, 0.14)) -> ClipSpec:  # fmt: skip
    count = int(rng.integers(1, max_objects + 1))
    objects = []
    for _ in range(count):
        while True:
            colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
            if allow_held_out or (colour, shape) not in HELD_OUT:
                break
        direction, speed = str(rng.choice(list(DIRECTIONS))), str(rng.choice(list(SPEEDS)))
        objects.append(_place(rng, colour, shape, direction, speed, sizes))
    return ClipSpec(tuple(objects), str(rng.choice(backgrounds)), float(rng.uniform(0.15, 0.4)))


def _place(rng, colour, shape, direction, speed, sizes) -> ObjectSpec:
    """A size and start point with which the whole path stays inside the frame (a large object moving
    quickly along an axis is made smaller: its path would not fit)."""
    dx, dy = DIRECTIONS[direction]
    travel = SPEEDS[speed] / math.hypot(dx, dy)  # along each axis that moves
    size = min(float(rng.uniform(*sizes)), (1 - travel) / 2 - 0.02 - 1e-6)
    margin = size + 0.02
    starts = []
    for d in (dx, dy):
        lo, hi = margin - min(0, d) * travel, 1 - margin - max(0, d) * travel
        starts.append(float(rng.uniform(lo, hi)))
    return ObjectSpec(colour, shape, direction, speed, (starts[0], starts[1]), size)


def render(spec: ClipSpec, frames: int, height: int, width: int, seed: int = 0,
           window: tuple[int, int, int, int] | None = None) -> torch.Tensor:  # fmt: skip
    """The clip as [3, frames, height, width] in [-1, 1]; with `window` = (top, left, rows, columns) only
    that part of the frame is rendered ([3, frames, rows, columns])."""
    rng = np.random.default_rng(seed)
    top, left, rows, columns = window or (0, 0, height, width)
    ys, xs = np.meshgrid((np.arange(top, top + rows) + 0.5) / height, (np.arange(left, left + columns) + 0.5) / width,
                         indexing="ij")  # fmt: skip
    ys, xs = ys.astype(np.float32), xs.astype(np.float32)
    background = _background(spec.background, spec.background_shade, xs, ys, rng)
    video = np.repeat(background[None].astype(np.float32), frames, axis=0)  # [F, H, W, 3]
    # [F, 1, 1]: every frame's share of the path, all frames at once
    progress = np.arange(frames, dtype=np.float32)[:, None, None] / max(frames - 1, 1)
    for obj in spec.objects:
        dx, dy = DIRECTIONS[obj.direction]
        step = SPEEDS[obj.speed] / math.hypot(dx, dy)
        cx, cy = obj.start[0] + dx * step * progress, obj.start[1] + dy * step * progress
        # Only the box the object's path sweeps (every shape lies within 1.05 radii, plus its soft edge).
        reach = 1.3 * obj.size + 2 / min(height, width)
        box = []
        for lo, hi, origin, count, extent in ((cy.min(), cy.max(), top, rows, height),
                                              (cx.min(), cx.max(), left, columns, width)):  # fmt: skip
            first = max(0, math.floor((lo - reach) * extent) - origin)
            box.append(slice(first, max(first, min(count, math.ceil((hi + reach) * extent) - origin))))
        area = video[:, box[0], box[1]]
        u, v = (xs[box[0], box[1]] - cx) / obj.size, (ys[box[0], box[1]] - cy) / obj.size
        alpha = _mask(obj.shape, u, v, 1.5 / (obj.size * width))[..., None].astype(np.float32)
        area += alpha * (np.asarray(COLOURS[obj.colour], np.float32) - area)
    return torch.from_numpy(video).permute(3, 0, 1, 2).float() * 2 - 1


def _background(kind: str, shade: float, xs, ys, rng) -> np.ndarray:
    if kind == "plain":
        value = np.full_like(xs, shade)
    elif kind == "striped":
        period = rng.uniform(0.08, 0.2)
        value = shade + 0.06 * np.sign(np.sin(2 * np.pi * (xs + ys * rng.uniform(-1, 1)) / period))
    elif kind == "checkered":
        period = rng.uniform(0.1, 0.25)
        value = shade + 0.06 * np.sign(np.sin(np.pi * xs / period) * np.sin(np.pi * ys / period))
    else:
        value = shade + 0.05 * rng.standard_normal(xs.shape)
    return np.repeat(np.clip(value, 0, 1)[..., None], 3, axis=-1)  # grey: colour identifies the objects


def _mask(shape: str, u: np.ndarray, v: np.ndarray, soft: float) -> np.ndarray:
    """Coverage in [0, 1] of a unit-radius shape in local coordinates (u, v), edges soft over `soft`."""
    if shape == "circle":
        d = np.hypot(u, v) - 1
    elif shape == "square":
        d = np.maximum(np.abs(u), np.abs(v)) - 0.85
    elif shape == "diamond":
        d = (np.abs(u) + np.abs(v)) / 1.2 - 1
    elif shape == "triangle":  # pointing up, centroid at the origin
        d = np.maximum.reduce([v - 0.5, -0.866 * u - 0.5 * v - 0.5, 0.866 * u - 0.5 * v - 0.5]) * 1.6
    elif shape == "star":  # five points
        angle, radius = np.arctan2(v, u) + np.pi / 2, np.hypot(u, v)
        d = radius - (0.55 + 0.45 * np.abs(np.cos(2.5 * angle))) * 1.05
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    return np.clip(0.5 - d / soft, 0, 1)


class ShapesDataset(torch.utils.data.Dataset):
    """Clip `i` of a dataset with seed `s` is always the same: (video [3, F, H, W] in [-1, 1], caption).

    With `crop`, each clip is a random `crop`×`crop` window of the full frame (cheap training inputs for
    the fully convolutional VAE). With `short_captions` = p, a clip's caption leaves out the speed with
    probability p and, independently, the background (models then also follow prompts written without them).
    """

    def __init__(self, length: int = 100_000, frames: int = 33, height: int = 96, width: int = 96, seed: int = 0,
                 max_objects: int = 3, allow_held_out: bool = False, crop: int | None = None,
                 backgrounds: tuple[str, ...] = BACKGROUNDS, sizes: tuple[float, float] = (0.09, 0.14),
                 short_captions: float = 0.0):  # fmt: skip
        if not 0 <= short_captions <= 1:
            raise ValueError(f"short_captions is a probability; got {short_captions}")
        if crop is not None and not 0 < crop <= min(height, width):
            raise ValueError(f"crop must be in 1..{min(height, width)}, got {crop}")
        self.length, self.frames, self.height, self.width = length, frames, height, width
        self.seed, self.max_objects, self.allow_held_out, self.crop = seed, max_objects, allow_held_out, crop
        unknown = set(backgrounds) - set(BACKGROUNDS)
        if unknown or not backgrounds:
            raise ValueError(f"backgrounds must be some of {BACKGROUNDS}; got {backgrounds}")
        self.backgrounds, self.sizes, self.short_captions = tuple(backgrounds), sizes, short_captions

    def __len__(self) -> int:
        return self.length

    def spec(self, index: int) -> ClipSpec:
        rng = np.random.default_rng([self.seed, index])
        return sample_spec(rng, max_objects=self.max_objects, allow_held_out=self.allow_held_out,
                           backgrounds=self.backgrounds, sizes=self.sizes)  # fmt: skip

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        spec, window = self.spec(index), None
        if self.crop is not None:
            rng = np.random.default_rng([self.seed, index, 1])
            top, left = (int(rng.integers(0, n - self.crop + 1)) for n in (self.height, self.width))
            window = (top, left, self.crop, self.crop)
        video = render(
            spec, self.frames, self.height, self.width, seed=self.seed * 1_000_003 + index, window=window
        )
        keep_speed, keep_background = (
            np.random.default_rng([self.seed, index, 2]).random(2) >= self.short_captions
        )
        return video, spec.caption(speed=bool(keep_speed), background=bool(keep_background))
