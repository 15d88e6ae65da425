"""Writing videos: H.264 (yuv420p) MP4 through PyAV, atomically, with a JSON sidecar."""

from __future__ import annotations

import contextlib
import json
import os
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sana_video._files import atomic_path, publish, temporary_beside


def frames_to_uint8(frames: Any) -> np.ndarray:
    """One video's frames -> uint8 [F, H, W, 3].

    Accepts a list of PIL images, a float array [F, H, W, 3] in [0, 1] (the pipelines' "np" output) or
    uint8, a list of [H, W, 3] arrays, or a float tensor [F, 3, H, W] in [0, 1] (the "pt" output).
    """
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("no frames to write")
        frames = np.stack([np.asarray(f.convert("RGB") if hasattr(f, "convert") else f) for f in frames])
    elif hasattr(frames, "detach"):  # a torch tensor: [F, 3, H, W] ("pt" output) or [F, H, W, 3]
        import torch

        if frames.ndim != 4 or 3 not in (frames.shape[1], frames.shape[-1]):
            raise ValueError(
                f"a tensor video must be [F, 3, H, W] or [F, H, W, 3]; got {tuple(frames.shape)}"
            )
        if frames.shape[-1] != 3:
            frames = frames.permute(0, 2, 3, 1)
        if frames.dtype != torch.uint8:
            # Convert where the frames are (a GPU, say), so only bytes cross to the CPU.
            frames = (frames.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
        frames = frames.cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be [F, H, W, 3] with F ≥ 1; got shape {frames.shape}")
    if frames.dtype != np.uint8:
        frames = (np.clip(frames.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return frames


def _encodable(frames: Any, size: tuple[int, int] | None) -> tuple[np.ndarray, tuple[int, int]]:
    """uint8 frames padded to even sizes (yuv420p needs them), and their original (height, width), which
    must be `size` once a stream has one."""
    frames = frames_to_uint8(frames)
    height, width = frames.shape[1:3]
    if size is not None and size != (height, width):
        raise ValueError(f"frame size changed from {size} to {(height, width)}")
    if height % 2 or width % 2:
        frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    return frames, (height, width)


class VideoWriter:
    """Encode frames to an MP4 as they come; the file appears under its name only when complete.

        with VideoWriter("out.mp4", fps=16) as writer:
            writer.write(frames)        # uint8 [n, H, W, 3], any number of calls

    Frames go to a temporary file beside the target, renamed on a clean exit; on an exception it is
    deleted, so a failed run leaves nothing behind. Odd sizes are padded by one edge pixel (yuv420p
    needs even sizes). The same frames always give the same bytes.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 16, crf: int = 18):
        import av

        self.path = Path(path)
        if fps <= 0:
            raise ValueError(f"fps must be positive (got {fps})")
        self._tmp = temporary_beside(self.path, suffix=".partial.mp4")
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._stream.pix_fmt = "yuv420p"
        # x264's AVX-512 MB-tree kernels (the lookahead's cost propagation) let uninitialised heap memory
        # into the rate control: the same frames encoded twice in one process could give different bytes.
        # cpu-independent swaps in the plain-C versions of just those two kernels, so the bytes depend
        # only on the frames (and match across CPUs with and without AVX-512).
        self._stream.options = {"crf": str(crf), "x264-params": "cpu-independent=1"}
        self._size: tuple[int, int] | None = None
        self.frames_written = 0

    def write(self, frames: Any) -> None:
        import av

        frames, size = _encodable(frames, self._size)
        if self._size is None:
            self._size = size
            self._stream.height, self._stream.width = frames.shape[1:3]
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
        publish(self._tmp, self.path)
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


class ChunkedVideoWriter:
    """Write a long video chunk by chunk so that it survives interruptions.

    - The file is a fragmented MP4 flushed frame by frame: killed at any moment, it plays up to the
      last frame that reached it (all but the frame still in the muxer).
    - Each chunk is an independent closed GOP (an IDR frame first, constant QP, no B-frames or
      lookahead), so its encoding does not depend on earlier chunks: a resumed run copies the packets
      of finished chunks from the interrupted file and encodes on, and the result decodes to exactly
      the frames of an uninterrupted run.

        writer = ChunkedVideoWriter(path, fps=16)
        packets = writer.write_chunk(frames)     # this chunk's encoded packets (for a checkpoint)
        writer.close()

    `resume_from=(old_path, frames_to_copy, packets)` starts from the first `frames_to_copy` frames of
    an interrupted file, followed by `packets` (a chunk saved with the checkpoint).
    """

    OPTIONS: ClassVar[dict[str, str]] = {
        "movflags": "frag_every_frame+empty_moov+default_base_moof",
        "flush_packets": "1",
    }

    def __init__(
        self, path: str | os.PathLike, fps: float, qp: int = 18, preset: str = "veryfast", resume_from=None
    ):
        import av

        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001)
        target = self.path.with_name(f".{self.path.name}.resume") if resume_from else self.path
        self._container = av.open(str(target), mode="w", format="mp4", options=dict(self.OPTIONS))
        self._stream = self._container.add_stream("libx264", rate=self.fps)
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {
            "qp": str(qp),
            "preset": preset,
            "tune": "zerolatency",
            "forced-idr": "1",
            "x264-params": "keyint=100000:min-keyint=100000:scenecut=0:bframes=0",
        }
        self._stream.codec_context.time_base = 1 / self.fps
        self._size: tuple[int, int] | None = None
        self.frames_written = 0
        self._packets: list[dict] | None = None
        if resume_from is not None:
            old_path, frames_to_copy, packets = resume_from
            self._resume(Path(old_path), frames_to_copy, packets)
            os.replace(target, self.path)  # the resumed file takes the interrupted one's place

    def _open(self, height: int, width: int) -> None:
        self._size = (height, width)
        self._stream.height, self._stream.width = height + height % 2, width + width % 2
        self._container.start_encoding()  # the header (an empty moov) must carry the encoder's SPS/PPS

    def write_chunk(self, frames: Any) -> list[dict]:
        """Encode one chunk (uint8 or float frames, as `frames_to_uint8` takes); returns its packets."""
        import av

        frames, size = _encodable(frames, self._size)
        if self._size is None:
            self._open(*size)
        self._packets = []
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts, frame.time_base = self.frames_written, 1 / self.fps
            if i == 0:
                frame.pict_type = av.video.frame.PictureType.I  # an IDR: the chunk starts a closed GOP
            self._mux(self._stream.encode(frame))
            self.frames_written += 1
        packets, self._packets = self._packets, None
        return packets

    def _mux(self, packets) -> None:
        for packet in packets:
            if self._packets is not None:
                self._packets.append(
                    {"data": bytes(packet), "pts": packet.pts, "dts": packet.dts, "key": packet.is_keyframe}
                )
            self._container.mux(packet)

    def _resume(self, old_path: Path, frames_to_copy: int, packets: list[dict]) -> None:
        import av

        with av.open(str(old_path)) as old:
            stream = old.streams.video[0]
            self._open(stream.codec_context.height, stream.codec_context.width)
            time_base = stream.time_base
            try:
                for packet in old.demux(stream):
                    if packet.pts is None:
                        continue
                    frame_index = round(packet.pts * time_base * self.fps)
                    if frame_index >= frames_to_copy:
                        break
                    self._container.mux(
                        self._packet(_avcc_to_annexb(bytes(packet)), frame_index, packet.is_keyframe)
                    )
                    self.frames_written += 1
            except av.error.InvalidDataError:  # the interrupted file may end in a cut fragment
                pass
        if self.frames_written != frames_to_copy:
            raise ValueError(
                f"{old_path} holds {self.frames_written} whole frames; resuming needs {frames_to_copy}"
            )
        for saved in packets:
            self._container.mux(self._packet(saved["data"], saved["pts"], saved["key"], saved["dts"]))
            self.frames_written += 1

    def _packet(self, data: bytes, pts: int, key: bool, dts: int | None = None):
        import av

        packet = av.Packet(data)
        packet.pts, packet.dts = pts, pts if dts is None else dts
        packet.time_base, packet.stream, packet.is_keyframe = 1 / self.fps, self._stream, key
        return packet

    def close(self) -> Path:
        if self._size is not None:
            self._mux(self._stream.encode())
        self._container.close()
        return self.path


def _avcc_to_annexb(data: bytes) -> bytes:
    """MP4 stores H.264 NAL units with 4-byte lengths; our encoder's stream takes start codes."""
    out, i = bytearray(), 0
    while i + 4 <= len(data):
        size = int.from_bytes(data[i : i + 4], "big")
        out += b"\x00\x00\x00\x01" + data[i + 4 : i + 4 + size]
        i += 4 + size
    return bytes(out)


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
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decode an MP4 back to uint8 [F, H, W, 3] and its frame rate (for checks and tests)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return np.stack(frames), float(stream.average_rate)
