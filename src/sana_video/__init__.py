"""sana-video: SANA-Video text/image-to-video generation.

The public API. Names are imported on first use, so `sana-video --help` does not wait for torch and
diffusers to load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "RECOMMENDED_NEGATIVE_PROMPT": "sana_video.pipelines",
    "LongSanaVideoPipeline": "sana_video.pipelines",
    "SanaImageToVideoPipeline": "sana_video.pipelines",
    "SanaVideoPipeline": "sana_video.pipelines",
    "SanaVideoPipelineOutput": "sana_video.pipelines",
    "SanaVideoState": "sana_video.model",
    "SanaVideoTransformer3DModel": "sana_video.model",
    "SanaVideoTransformerOutput": "sana_video.model",
    "export_to_video": "sana_video.video",
}

__all__ = [
    "RECOMMENDED_NEGATIVE_PROMPT",
    "LongSanaVideoPipeline",
    "SanaImageToVideoPipeline",
    "SanaVideoPipeline",
    "SanaVideoPipelineOutput",
    "SanaVideoState",
    "SanaVideoTransformer3DModel",
    "SanaVideoTransformerOutput",
    "__version__",
    "export_to_video",
]

if TYPE_CHECKING:
    from sana_video.model import SanaVideoState, SanaVideoTransformer3DModel, SanaVideoTransformerOutput
    from sana_video.pipelines import (
        RECOMMENDED_NEGATIVE_PROMPT,
        LongSanaVideoPipeline,
        SanaImageToVideoPipeline,
        SanaVideoPipeline,
        SanaVideoPipelineOutput,
    )
    from sana_video.video import export_to_video


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sana_video' has no attribute {name!r}")
