"""MP4 writing: decoded back, the frames, size and rate are what was written."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import PIL.Image
import pytest
import torch

from sana_video.video import ChunkedVideoWriter, VideoWriter, export_to_video, frames_to_uint8, read_video


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def _smooth_video(frames=9, height=48, width=64) -> np.ndarray:
    """A smooth moving pattern: H.264 at crf 18 with 4:2:0 chroma reproduces it closely."""
    t, y, x = np.meshgrid(
        np.arange(frames), np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij"
    )
    rgb = np.stack(
        [0.5 + 0.3 * np.sin(2 * x + 0.2 * t), 0.3 + 0.5 * y, 0.5 + 0.2 * np.cos(2 * y - 0.1 * t)], axis=-1
    )
    return rgb.astype(np.float32)


@pytest.mark.parametrize("fps", [16, 24, 12.5])
def test_written_video_decodes_to_the_same_frames(tmp_path, fps):
    video = _smooth_video()
    path = export_to_video(video, tmp_path / "v.mp4", fps=fps, metadata={"seed": 3})
    frames, rate = read_video(path)
    assert frames.shape == (9, 48, 64, 3) and rate == pytest.approx(fps)
    assert _psnr(frames, frames_to_uint8(video)) > 35
    assert json.loads((tmp_path / "v.json").read_text()) == {"seed": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.json", "v.mp4"]  # no temporary files left
    assert path.stat().st_mode & 0o044  # readable by others, like any file the user writes


def test_accepts_pipeline_output_layouts(tmp_path):
    video = _smooth_video(frames=5)
    as_tensor = torch.from_numpy(video).permute(0, 3, 1, 2)  # "pt": [F, 3, H, W]
    as_pil = [PIL.Image.fromarray(f) for f in frames_to_uint8(video)]  # "pil"
    reference = frames_to_uint8(video)
    assert np.array_equal(frames_to_uint8(as_tensor), reference)
    assert np.array_equal(frames_to_uint8(as_tensor.permute(0, 2, 3, 1)), reference)  # channels last
    assert np.array_equal(frames_to_uint8(as_pil), reference)


def test_odd_sizes_are_padded_not_rejected(tmp_path):
    frames, _ = read_video(export_to_video(_smooth_video(height=33, width=47), tmp_path / "odd.mp4"))
    assert frames.shape[1:3] == (34, 48)


def _dirty_the_heap(rng: np.random.Generator) -> None:
    """Allocate and free blocks of random bytes, small enough (< 128 KiB, malloc's mmap threshold) to
    come from the heap, so the memory malloc hands out next holds garbage, as in a long-running process."""
    blocks = [rng.integers(0, 256, size, dtype=np.uint8) for size in rng.integers(64, 100_000, 200)]
    del blocks


def _write_chunked(frames: np.ndarray, path):
    writer = ChunkedVideoWriter(path, fps=16)
    writer.write_chunk(frames)
    return writer.close()


@pytest.mark.parametrize("write", [export_to_video, _write_chunked], ids=["export", "chunked"])
@pytest.mark.parametrize("height, width", [(32, 32), (64, 64)])
def test_the_same_frames_give_the_same_bytes_within_one_process(tmp_path, write, height, width):
    # x264's AVX-512 MB-tree kernels read uninitialised heap memory; the writers must not let that reach
    # the file (see VideoWriter; ChunkedVideoWriter's constant QP never runs them). Only CPUs with AVX-512
    # can fail this: there, without the fix, the export cases failed in 20 of 20 runs.
    frames = frames_to_uint8(_smooth_video(height=height, width=width))
    rng = np.random.default_rng(0)
    digests = []
    for i in range(8):
        _dirty_the_heap(rng)
        digests.append(hashlib.sha256(write(frames, tmp_path / f"{i}.mp4").read_bytes()).hexdigest()[:12])
    assert len(set(digests)) == 1, digests


def test_a_failure_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="frame size changed"), VideoWriter(tmp_path / "x.mp4") as writer:
        writer.write(_smooth_video(height=48))
        writer.write(_smooth_video(height=32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((4, 4, 3)), r"\[F, H, W, 3\]"),
        (torch.zeros(2, 4, 8, 8), r"\[F, 3, H, W\]"),
        ([], "no frames"),
    ],
)
def test_bad_frames_raise(bad, message):
    with pytest.raises(ValueError, match=message):
        frames_to_uint8(bad)
