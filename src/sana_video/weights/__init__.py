"""Weights that ship inside the package: the project's small shapes model, when it has been built
(`sana-video train small`, docs/TRAINING.md). The command line uses it when no --model is given."""

from __future__ import annotations

from pathlib import Path

SHAPES_MODEL = Path(__file__).parent / "shapes"


def bundled_model() -> Path | None:
    """The bundled pipeline folder, or None where this copy of the package has none."""
    return SHAPES_MODEL if (SHAPES_MODEL / "model_index.json").is_file() else None
