"""sana-video: SANA-Video text/image-to-video generation."""

from sana_video.model import SanaVideoState, SanaVideoTransformer3DModel, SanaVideoTransformerOutput

__version__ = "0.1.0"

__all__ = ["SanaVideoState", "SanaVideoTransformer3DModel", "SanaVideoTransformerOutput", "__version__"]
