"""Writing videos: H.264 (yuv420p) MP4 through PyAV, atomically, with a JSON sidecar."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np


def frames_to_uint8(frames: Any) -> np.ndarray:
    """One video's frames -> uint8 [F, H, W, 3].

    Accepts a list of PIL images, a float array [F, H, W, 3] in [0, 1] (the pipelines' "np" output) or
    uint8, a list of [H, W, 3] arrays, or a float tensor [F, 3, H, W] in [0, 1] (the "pt" output).
    """
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("no frames to write")
        frames = np.stack([np.asarray(f.convert("RGB") if hasattr(f, "convert") else f) for f in frames])
    elif hasattr(frames, "detach"):  # a torch tensor, channels first
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"a tensor video must be [F, 3, H, W]; got {tuple(frames.shape)}")
        frames = frames.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be [F, H, W, 3] with F ≥ 1; got shape {frames.shape}")
    if frames.dtype != np.uint8:
        frames = (np.clip(frames.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return frames


class VideoWriter:
    """Encode frames to an MP4 as they come; the file appears under its name only when complete.

        with VideoWriter("out.mp4", fps=16) as writer:
            writer.write(frames)        # uint8 [n, H, W, 3], any number of calls

    Frames go to a temporary file beside the target, renamed on a clean exit; on an exception it is
    deleted, so a failed run leaves nothing behind. Odd sizes are padded by one edge pixel (yuv420p
    needs even sizes).
    """

    def __init__(self, path: str | os.PathLike, fps: float = 16, crf: int = 18):
        import av

        self.path = Path(path)
        if fps <= 0:
            raise ValueError(f"fps must be positive (got {fps})")
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}.", suffix=".partial.mp4")
        os.close(fd)
        self._tmp = Path(tmp)
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf)}
        self._size: tuple[int, int] | None = None
        self.frames_written = 0

    def write(self, frames: Any) -> None:
        import av

        frames = frames_to_uint8(frames)
        height, width = frames.shape[1:3]
        if self._size is None:
            self._size = (height, width)
            self._stream.height, self._stream.width = height + height % 2, width + width % 2
        elif self._size != (height, width):
            raise ValueError(f"frame size changed from {self._size} to {(height, width)}")
        if height % 2 or width % 2:
            frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        for frame in frames:
            for packet in self._stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            ):
                self._container.mux(packet)
        self.frames_written += len(frames)

    def close(self) -> Path:
        """Flush, finish the file and move it into place."""
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        _publish(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # the container may be half-written; it is deleted anyway
            self._container.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def export_to_video(
    frames: Any, path: str | os.PathLike, fps: float = 16, metadata: dict | None = None
) -> Path:
    """Write one video as H.264 yuv420p MP4 (atomically) and, with `metadata`, a JSON sidecar
    `<name>.json` beside it. `frames` as in `frames_to_uint8`; returns the video's path."""
    path = Path(path)
    with VideoWriter(path, fps=fps) as writer:
        writer.write(frames)
    if metadata is not None:
        write_json(sidecar_path(path), metadata)
    return path


def sidecar_path(video: str | os.PathLike) -> Path:
    return Path(video).with_suffix(".json")


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write JSON atomically (a temporary file, then a rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.write("\n")
        _publish(Path(tmp), path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _publish(tmp: Path, path: Path) -> None:
    """Give a finished temporary file the usual permissions (mkstemp makes it private) and move it in place."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decode an MP4 back to uint8 [F, H, W, 3] and its frame rate (for checks and tests)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return np.stack(frames), float(stream.average_rate)
