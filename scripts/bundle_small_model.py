"""Put a built small model into the package as its default (src/sana_video/weights/shapes).

    python scripts/bundle_small_model.py outputs/shapes

Copies the pipeline folder without its work files, refuses more than 30 MB in all (the package's budget
for weights), and checks that the copy loads. Run the bundled-model tests on the folder first:
SANA_VIDEO_SHAPES_MODEL=outputs/shapes pytest tests/test_bundled_model.py.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

LIMIT = 30 * 10**6  # bytes
TARGET = Path(__file__).resolve().parents[1] / "src" / "sana_video" / "weights" / "shapes"


def main() -> None:
    source = Path(sys.argv[1])
    if not (source / "model_index.json").is_file() or not (source / "sana_video.json").is_file():
        raise SystemExit(f"{source} is not a small-model folder (no model_index.json or sana_video.json)")
    files = [p for p in source.rglob("*") if p.is_file() and ".work" not in p.relative_to(source).parts]
    size = sum(p.stat().st_size for p in files)
    if size > LIMIT:
        raise SystemExit(f"{source} holds {size / 1e6:.1f} MB; the package allows {LIMIT / 1e6:.0f} MB")
    shutil.rmtree(TARGET, ignore_errors=True)
    for path in files:
        destination = TARGET / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)
    from sana_video import SanaVideoPipeline

    SanaVideoPipeline.from_pretrained(TARGET)  # loads, or raises
    print(f"bundled {len(files)} files, {size / 1e6:.1f} MB, into {TARGET}")


if __name__ == "__main__":
    main()
