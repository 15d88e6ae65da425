"""The SANA-Video transformer: embeddings, attention, Mix-FFN, blocks and the chunk-to-chunk state."""

from sana_video.model.presets import PRESETS, preset
from sana_video.model.state import LayerState, SanaVideoState
from sana_video.model.transformer import SanaVideoTransformer3DModel, SanaVideoTransformerOutput

__all__ = [
    "PRESETS",
    "LayerState",
    "SanaVideoState",
    "SanaVideoTransformer3DModel",
    "SanaVideoTransformerOutput",
    "preset",
]
