"""The `sana-video` command."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest
from diffusers import SanaVideoTransformer3DModel as DiffusersSanaVideo

from sana_video import __version__
from sana_video.cli import main
from sana_video.model.presets import preset


def test_console_script_points_at_main():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "sana-video"]
    assert script.load() is main


def test_demo_reports_what_it_ran(capsys):
    assert main(["demo", "--frames", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    reference_params = sum(p.numel() for p in DiffusersSanaVideo(**preset("tiny")).parameters())
    assert f"{reference_params:,} parameters" in out
    assert "velocity [1, 16, 3, 16, 16]" in out
    assert "after chunk 3" in out and "(constant)" in out


def test_demo_rejects_bad_frames(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--frames", "0"])
    assert exc.value.code == 2
    assert "must be at least 1 (got 0)" in capsys.readouterr().err


def test_module_entry_prints_version():
    result = subprocess.run(
        [sys.executable, "-m", "sana_video", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"sana-video {__version__}"
