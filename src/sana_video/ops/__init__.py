"""Math with a fast path. Each op has a plain fp32 reference (`naive.py`) next to its production code."""

from sana_video.ops.dispatch import use_backend
from sana_video.ops.linear_attention import LinearAttentionState, QKNorm, linear_attention

__all__ = ["LinearAttentionState", "QKNorm", "linear_attention", "use_backend"]
