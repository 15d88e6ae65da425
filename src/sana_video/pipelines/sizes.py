"""Video sizes: validation with suggestions, and the aspect-ratio bins the models were trained on."""

from __future__ import annotations

import json
from pathlib import Path

# Aspect-ratio bins (height/width -> (height, width)) of the official pipelines, chosen by the
# transformer's `sample_size`: 30 for the 480p model, 22 for the 720p one.
ASPECT_RATIO_BINS: dict[int, dict[float, tuple[int, int]]] = {
    30: {
        0.5: (448, 896), 0.57: (480, 832), 0.68: (528, 768), 0.78: (560, 720), 1.0: (624, 624), 1.13: (672, 592),
        1.29: (720, 560), 1.46: (768, 528), 1.67: (816, 496), 1.75: (832, 480), 2.0: (896, 448),
    },
    22: {
        0.5: (672, 1344), 0.57: (704, 1280), 0.68: (800, 1152), 0.78: (832, 1088), 1.0: (960, 960),
        1.13: (1024, 896), 1.29: (1088, 832), 1.46: (1152, 800), 1.67: (1248, 736), 1.75: (1280, 704),
        2.0: (1344, 672),
    },
}  # fmt: skip


def _nearest_multiples(value: int, multiple: int) -> str:
    below = max(multiple, value // multiple * multiple)
    above = below + multiple if below <= value else below
    return f"{below}" if below == above else f"{below} or {above}"


def check_size(name: str, value: int, multiple: int) -> None:
    """Height and width must be positive multiples of VAE factor × patch size (16 for the 480p model)."""
    if not isinstance(value, int) or value < multiple or value % multiple:
        raise ValueError(
            f"{name} must be a positive multiple of {multiple} (got {value}); try {_nearest_multiples(int(value), multiple)}"
        )


def check_frames(frames: int, temporal_factor: int) -> None:
    """The VAE maps 1 + k·factor frames to 1 + k latent frames; other counts cannot be generated."""
    if not isinstance(frames, int) or frames < 1 or (frames - 1) % temporal_factor:
        k = max(0, (int(frames) - 1) // temporal_factor)
        options = sorted({1 + k * temporal_factor, 1 + (k + 1) * temporal_factor} - {frames})
        raise ValueError(
            f"frames must be {temporal_factor}k+1 (got {frames}); try {' or '.join(map(str, options))}"
        )


def binned_size(height: int, width: int, sample_size: int, multiple: int) -> tuple[int, int]:
    """The trained size whose aspect ratio is closest to height/width, rounded to a valid multiple.

    (Seven of the reference's 480p bins are multiples of 16 but not of 32, which its own check then
    rejects; we require what the model needs, `multiple`.)
    """
    if sample_size not in ASPECT_RATIO_BINS:
        raise ValueError(
            f"resolution binning knows the 480p (sample_size 30) and 720p (22) models, not sample_size "
            f"{sample_size}; pass use_resolution_binning=False and a valid height and width"
        )
    bins = ASPECT_RATIO_BINS[sample_size]
    ratio = min(bins, key=lambda r: abs(r - height / width))
    return tuple(max(multiple, round(side / multiple) * multiple) for side in bins[ratio])


def folder_geometry(folder) -> tuple[int, int]:
    """(temporal factor, size multiple) of a saved pipeline, read from its config files (no weights)."""
    vae = json.loads((Path(folder) / "vae" / "config.json").read_text())
    transformer = json.loads((Path(folder) / "transformer" / "config.json").read_text())
    temporal = vae.get("scale_factor_temporal") or vae.get("temporal_compression_ratio") or 4
    spatial = vae.get("scale_factor_spatial") or vae.get("spatial_compression_ratio") or 8
    return temporal, spatial * transformer.get("patch_size", (1, 2, 2))[1]
