"""The public API: every exported name resolves, and importing the package is cheap."""

from __future__ import annotations

import subprocess
import sys

import sana_video


def test_every_exported_name_resolves():
    for name in sana_video.__all__:
        assert getattr(sana_video, name) is not None, name


def test_import_does_not_load_torch_or_diffusers():
    code = "import sys, sana_video; print(any(m in sys.modules for m in ('torch', 'diffusers')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
