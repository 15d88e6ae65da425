"""Task front-ends: encode text (and an image), sample, decode.

Names load on first use, so the light helpers (`sizes`, `text`) import without torch and diffusers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "COMPLEX_HUMAN_INSTRUCTION": "sana_video.pipelines.text",
    "RECOMMENDED_NEGATIVE_PROMPT": "sana_video.pipelines.text",
    "LongSanaVideoPipeline": "sana_video.pipelines.long_video",
    "SanaImageToVideoPipeline": "sana_video.pipelines.image_to_video",
    "SanaVideoPipeline": "sana_video.pipelines.text_to_video",
    "SanaVideoPipelineOutput": "sana_video.pipelines.base",
}

__all__ = [
    "COMPLEX_HUMAN_INSTRUCTION",
    "RECOMMENDED_NEGATIVE_PROMPT",
    "LongSanaVideoPipeline",
    "SanaImageToVideoPipeline",
    "SanaVideoPipeline",
    "SanaVideoPipelineOutput",
]

if TYPE_CHECKING:
    from sana_video.pipelines.base import SanaVideoPipelineOutput
    from sana_video.pipelines.image_to_video import SanaImageToVideoPipeline
    from sana_video.pipelines.long_video import LongSanaVideoPipeline
    from sana_video.pipelines.text import COMPLEX_HUMAN_INSTRUCTION, RECOMMENDED_NEGATIVE_PROMPT
    from sana_video.pipelines.text_to_video import SanaVideoPipeline


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sana_video.pipelines' has no attribute {name!r}")
