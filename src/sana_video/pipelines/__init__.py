"""Task front-ends: encode text (and an image), sample, decode."""

from sana_video.pipelines.base import SanaVideoPipelineOutput
from sana_video.pipelines.image_to_video import SanaImageToVideoPipeline
from sana_video.pipelines.text import COMPLEX_HUMAN_INSTRUCTION, RECOMMENDED_NEGATIVE_PROMPT
from sana_video.pipelines.text_to_video import SanaVideoPipeline

__all__ = [
    "COMPLEX_HUMAN_INSTRUCTION",
    "RECOMMENDED_NEGATIVE_PROMPT",
    "SanaImageToVideoPipeline",
    "SanaVideoPipeline",
    "SanaVideoPipelineOutput",
]
