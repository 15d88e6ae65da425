"""Long videos end to end: constant memory, and resuming after a real kill or Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sana_video.video import read_video

# Large allocations through mmap, so that peak RSS follows the memory in use rather than what
# glibc keeps around after frees.
MEASURE_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}

MEMORY_CHILD = """
import json, re, sys, torch
from sana_video import LongSanaVideoPipeline
folder, mode, chunks, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
pipe = LongSanaVideoPipeline.from_pretrained(folder)
pipe.set_progress_bar_config(disable=True)
args = dict(frames=4 * (4 * chunks - 1) + 1, chunk_frames=4, height=96, width=96, max_sequence_length=16)
sizes = []
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM): measure generation, not loading
    f.write("5")
if mode == "write":
    pipe.write(out, "a red circle", seed=0, on_chunk=lambda c: c.state is not None and sizes.append(c.state.nbytes), **args)
else:  # the whole video in memory, by design: the control that shows the measurement can see growth
    pipe("a red circle", generator=torch.Generator().manual_seed(0), **args)
peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"peak": peak, "sizes": sizes}))
"""


def _peaks(folder: Path, mode: str, tmp: Path) -> tuple[dict, dict]:
    """Peak RSS of a 4-chunk and a 32-chunk run, run side by side (each process reports its own)."""
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", MEMORY_CHILD, str(folder), mode, str(n), str(tmp / f"{mode}{n}.mp4")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=MEASURE_ENV,
        )
        for n in (4, 32)
    ]
    results = []
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return tuple(results)


def test_memory_does_not_grow_with_length(long_dir, tmp_path):
    short, long = _peaks(long_dir, "write", tmp_path)
    assert abs(long["peak"] - short["peak"]) / short["peak"] < 0.05, (short["peak"], long["peak"])
    assert len(set(short["sizes"] + long["sizes"])) == 1  # the state's size never changes
    assert read_video(tmp_path / "write32.mp4")[0].shape[0] == 4 * (4 * 32 - 1) + 1
    # Control: holding the whole video (the in-memory API) is visible to the same measurement.
    held_short, held_long = _peaks(long_dir, "call", tmp_path)
    assert (held_long["peak"] - held_short["peak"]) / held_short["peak"] > 0.05


def _long_command(folder: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sana_video", "long", "0:a red circle | 2:a blue square", "--model", str(folder),
            "--height", "96", "--width", "96", "--frames", str(4 * (24 - 1) + 1), "--chunk-frames", "1",
            "--seed", "4", "--out", str(out), "--quiet", *extra]  # fmt: skip


def _interrupt_after(folder: Path, out: Path, chunks: int, sig: int) -> subprocess.Popen:
    """Start a long run and send `sig` once its checkpoint says `chunks` chunks are done."""
    checkpoint = out.with_name(f"{out.stem}.checkpoint.pt")
    # Ctrl-C as in a terminal: SIGINT at its default in the child even where this test runs with it
    # ignored (a shell's background job ignores SIGINT, and children inherit that).
    process = subprocess.Popen(_long_command(folder, out), stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    process.stderr_text = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if torch.load(checkpoint, weights_only=False)["next_chunk"] >= chunks:
                process.send_signal(sig)
                break
        except (FileNotFoundError, EOFError, RuntimeError):
            pass
        time.sleep(0.005)
    process.stderr_text = process.communicate(timeout=120)[1]
    return process


@pytest.fixture(scope="module")
def uninterrupted(long_dir, tmp_path_factory) -> np.ndarray:
    out = tmp_path_factory.mktemp("full") / "video.mp4"
    subprocess.run(_long_command(long_dir, out), check=True)
    return read_video(out)[0]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_an_interrupted_run_resumes_to_the_same_video(long_dir, tmp_path, uninterrupted, sig):
    out = tmp_path / "video.mp4"
    process = _interrupt_after(long_dir, out, chunks=3, sig=sig)
    assert process.returncode != 0, "the run finished before it was interrupted"
    partial, checkpoint = tmp_path / "video.partial.mp4", tmp_path / "video.checkpoint.pt"
    assert not out.exists() and checkpoint.exists()
    written, fps = read_video(partial)  # playable as it is
    done = torch.load(checkpoint, weights_only=False)["frames_before_chunk"]
    assert fps == 16 and written.shape[0] >= done and written.shape[1:] == (96, 96, 3)
    assert np.array_equal(written[:done], uninterrupted[:done])
    if sig == signal.SIGINT:
        assert process.returncode == 130 and "--resume" in process.stderr_text

    subprocess.run(_long_command(long_dir, out, "--resume"), check=True)
    resumed, _ = read_video(out)
    assert np.array_equal(resumed, uninterrupted)  # bit for bit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.json", "video.mp4"]
    assert json.loads((tmp_path / "video.json").read_text())["seed"] == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["x", "--frames", "129"],
            "--frames 129 is too long: RoPE positions are absolute, so this model makes at most 125 frames",
        ),
        (["0:a | x:b"], 'prompt schedule entries are "SECONDS:prompt"'),
        (["1:a | 2:b"], "a prompt schedule starts at 0 seconds"),
        (["x", "--resume"], "--resume needs --out"),
        (["x", "--frames", "80"], "frames must be 4k+1 (got 80); try 77 or 81"),
    ],
)
def test_long_bad_input_is_one_clear_line(t2v_dir, capsys, tmp_path, args, message):
    from sana_video.cli import main

    frames = [] if "--frames" in args else ["--frames", "25"]  # within the tiny model's RoPE table
    code = main(["long", *args, *frames, "--model", str(t2v_dir), "--height", "32", "--width", "32"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and message in err


def test_resume_without_a_checkpoint_is_refused(t2v_dir, capsys, tmp_path):
    from sana_video.cli import main

    code = main(
        ["long", "x", "--frames", "25", "--model", str(t2v_dir), "--out", str(tmp_path / "v.mp4"), "--resume"]
    )
    assert code == 1 and "nothing to resume: no checkpoint" in capsys.readouterr().err


def test_the_model_folder_sets_chunking_and_sampler(t2v_dir, tmp_path):
    """sana_video.json's chunk_frames and sampler (the small model's: it is not distilled for few-step)
    are the defaults; the command line still overrides them."""
    import shutil

    from sana_video.cli import main

    model = tmp_path / "model"
    shutil.copytree(t2v_dir, model)
    (model / "sana_video.json").write_text(json.dumps({"chunk_frames": 2, "sampler": "euler", "steps": 2}))
    common = [
        "--model",
        str(model),
        "--frames",
        "25",
        "--height",
        "32",
        "--width",
        "32",
        "--seed",
        "1",
        "--quiet",
    ]
    assert main(["long", "a red circle", *common, "--out", str(tmp_path / "a.mp4")]) == 0
    record = json.loads((tmp_path / "a.json").read_text())
    assert (record["chunk_frames"], record["sampler"], record["steps"]) == (2, "euler", 2)
    assert main(["long", "a red circle", *common, "--sampler", "few-step", "--chunk-frames", "3",
                 "--out", str(tmp_path / "b.mp4")]) == 0  # fmt: skip
    record = json.loads((tmp_path / "b.json").read_text())
    assert (record["chunk_frames"], record["sampler"], record["steps"]) == (3, "few-step", 4)
