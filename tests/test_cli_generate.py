"""`sana-video generate` on a tiny saved pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from sana_video import SanaVideoPipeline
from sana_video.cli import main
from sana_video.pipelines.text import COMPLEX_HUMAN_INSTRUCTION
from sana_video.video import frames_to_uint8, read_video

SMALL = ["--height", "32", "--width", "32", "--frames", "9", "--steps", "3"]


def _generate(capsys, *args) -> tuple[int, str, str]:
    code = main(["generate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _media(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_text_to_video_writes_a_playable_mp4_and_its_record(t2v_dir, tmp_path, capsys):
    code, out, _ = _generate(capsys, "a red circle", "--model", str(t2v_dir), *SMALL, "--seed", "11",
                             "--fps", "12", "--out-dir", str(tmp_path))  # fmt: skip
    assert code == 0
    assert _media(tmp_path) == ["a-red-circle-11.json", "a-red-circle-11.mp4"]
    frames, fps = read_video(tmp_path / "a-red-circle-11.mp4")
    assert frames.shape == (9, 32, 32, 3) and fps == 12
    record = json.loads((tmp_path / "a-red-circle-11.json").read_text())
    assert record["seed"] == 11 and record["steps"] == 3 and record["frames"] == 9 and record["shift"] == 8.0
    assert record["full_prompt"] == "a red circle motion score: 30."
    for stage in ("load", "encode", "denoise", "decode", "write"):
        assert any(line.startswith(stage) for line in out.splitlines()), stage
    assert "seed 11" in out

    # The record reproduces the video: the same generation through the Python API.
    pipe = SanaVideoPipeline.from_pretrained(record["model"])
    pipe.set_progress_bar_config(disable=True)
    again = pipe(
        prompt=record["full_prompt"],
        negative_prompt=record["negative_prompt"],
        num_inference_steps=record["steps"],
        guidance_scale=record["guidance"],
        height=record["height"],
        width=record["width"],
        frames=record["frames"],
        generator=[torch.Generator().manual_seed(record["seed"])],
        complex_human_instruction=COMPLEX_HUMAN_INSTRUCTION,
        use_resolution_binning=False,
        output_type="np",
    ).frames[0]
    error = np.abs(frames.astype(np.float64) - frames_to_uint8(again).astype(np.float64)).mean()
    assert error < 3.0  # H.264 at crf 18 on 32×32 random-model noise


def test_default_names_never_overwrite(t2v_dir, tmp_path, capsys):
    for _ in range(2):
        assert (
            _generate(
                capsys, "a cat", "--model", str(t2v_dir), *SMALL, "--seed", "5", "--out-dir", str(tmp_path)
            )[0]
            == 0
        )
    assert _media(tmp_path) == ["a-cat-5-2.json", "a-cat-5-2.mp4", "a-cat-5.json", "a-cat-5.mp4"]


def test_several_videos_get_consecutive_seeds(t2v_dir, tmp_path, capsys):
    code, *_ = _generate(capsys, "a dog", "--model", str(t2v_dir), *SMALL, "--seed", "40", "--num-videos", "2",
                         "--out-dir", str(tmp_path), "--quiet")  # fmt: skip
    assert code == 0 and _media(tmp_path) == [
        "a-dog-40.json",
        "a-dog-40.mp4",
        "a-dog-41.json",
        "a-dog-41.mp4",
    ]
    first, _ = read_video(tmp_path / "a-dog-40.mp4")
    second, _ = read_video(tmp_path / "a-dog-41.mp4")
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 1


def test_prompt_file_writes_each_once(t2v_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\n# a comment\na blue square\na green star\n")
    out_dir = tmp_path / "out"
    args = ["--prompt-file", str(prompts), "--model", str(t2v_dir), *SMALL, "--out-dir", str(out_dir)]
    code, out, _ = _generate(capsys, *args)
    assert code == 0
    videos = sorted(p.name for p in out_dir.glob("*.mp4"))
    assert videos == ["001-a-red-circle.mp4", "004-a-blue-square.mp4", "005-a-green-star.mp4"]
    assert out.count("\nload") + out.startswith("load") == 1  # the model was loaded once
    stamps = {p: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    code, out, _ = _generate(capsys, *args)
    assert code == 0 and "skip" in out and "load" not in out
    assert {p: p.stat().st_mtime_ns for p in out_dir.iterdir()} == stamps


def test_image_to_video(i2v_dir, tmp_path, capsys):
    image = tmp_path / "first.png"
    PIL.Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(image)
    code, *_ = _generate(capsys, "a red circle", "--image", str(image), "--model", str(i2v_dir), *SMALL,
                         "--seed", "1", "--out", str(tmp_path / "clip.mp4"), "--quiet")  # fmt: skip
    assert code == 0
    record = json.loads((tmp_path / "clip.json").read_text())
    assert record["mode"] == "image-to-video" and record["scheduler"] == "FlowMatchEulerDiscreteScheduler"
    assert read_video(tmp_path / "clip.mp4")[0].shape == (9, 32, 32, 3)


def test_lora_option(t2v_dir, tmp_path, capsys):
    from diffusers import SanaVideoPipeline as DiffusersT2V
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    reference = DiffusersT2V.from_pretrained(t2v_dir)
    reference.transformer.add_adapter(
        LoraConfig(r=2, lora_alpha=2, target_modules=["to_q"], init_lora_weights=False)
    )
    DiffusersT2V.save_lora_weights(
        tmp_path / "lora", transformer_lora_layers=get_peft_model_state_dict(reference.transformer)
    )
    lora_file = tmp_path / "lora" / "pytorch_lora_weights.safetensors"
    common = ["a cat", "--model", str(t2v_dir), *SMALL, "--seed", "2", "--quiet"]
    assert _generate(capsys, *common, "--out", str(tmp_path / "plain.mp4"))[0] == 0
    assert (
        _generate(capsys, *common, "--lora", f"{lora_file}:0.8", "--out", str(tmp_path / "lora.mp4"))[0] == 0
    )
    assert json.loads((tmp_path / "lora.json").read_text())["lora"] == [f"{lora_file}:0.8"]
    plain, with_lora = read_video(tmp_path / "plain.mp4")[0], read_video(tmp_path / "lora.mp4")[0]
    assert np.abs(plain.astype(int) - with_lora.astype(int)).mean() > 0.5


def test_fp8_option(t2v_dir, tmp_path, capsys):
    """--fp8 runs the transformer's block matmuls in float8 (an fp32 emulation on the CPU): a slightly
    different video, and the record says so."""
    common = ["a cat", "--model", str(t2v_dir), *SMALL, "--seed", "2", "--quiet"]
    assert _generate(capsys, *common, "--out", str(tmp_path / "plain.mp4"))[0] == 0
    assert _generate(capsys, *common, "--fp8", "--out", str(tmp_path / "fp8.mp4"))[0] == 0
    assert json.loads((tmp_path / "fp8.json").read_text())["fp8"] is True
    assert json.loads((tmp_path / "plain.json").read_text())["fp8"] is False
    plain, fp8 = read_video(tmp_path / "plain.mp4")[0], read_video(tmp_path / "fp8.mp4")[0]
    assert plain.shape == fp8.shape and not np.array_equal(plain, fp8)


def _bad_inputs(t2v_dir: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "empty.txt").write_text("\n# nothing\n")
    (tmp / "corrupt.png").write_bytes(b"not an image at all")
    (tmp / "a-file").write_text("")
    model = ["--model", str(t2v_dir)]
    return {
        "frames 80": ([*model, "x", "--frames", "80"], "frames must be 4k+1 (got 80); try 77 or 81"),
        "height 100": (
            [*model, "x", "--height", "100"],
            "--height must be a positive multiple of 16 (got 100); try 96 or 112",
        ),
        "missing image": ([*model, "x", "--image", str(tmp / "nope.png")], "no such file"),
        "corrupt image": ([*model, "x", "--image", str(tmp / "corrupt.png")], "not a readable image"),
        "missing model": (["--model", str(tmp / "no-model"), "x"], "not a pipeline folder"),
        "negative steps": ([*model, "x", "--steps", "-2"], "argument --steps: must be at least 1 (got -2)"),
        "empty prompt file": ([*model, "--prompt-file", str(tmp / "empty.txt")], "has no prompts"),
        "unwritable folder": (
            [*model, "x", "--out-dir", str(tmp / "a-file" / "sub")],
            "cannot write to output folder",
        ),
        "empty prompt": ([*model, "  "], "no prompt"),
        "fp8 with lora": (
            [*model, "x", "--fp8", "--lora", str(tmp / "a-file")],
            "--fp8 with --lora is not supported",
        ),
        "out with several": (
            [*model, "x", "--num-videos", "2", "--out", str(tmp / "o.mp4")],
            "--out names one video",
        ),
    }


@pytest.mark.parametrize(
    "case",
    ["frames 80", "height 100", "missing image", "corrupt image", "missing model", "negative steps",
     "empty prompt file", "unwritable folder", "empty prompt", "fp8 with lora", "out with several"],
)  # fmt: skip
def test_bad_input_is_one_clear_line(t2v_dir, tmp_path, capsys, case):
    args, message = _bad_inputs(t2v_dir, tmp_path)[case]
    out_dir = tmp_path / "out"
    args = args if "--out-dir" in args or "--out" in args else [*args, "--out-dir", str(out_dir)]
    try:
        code = main(["generate", *args])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err
    assert not list(out_dir.glob("*")) if out_dir.exists() else True


def test_console_script_error_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sana_video", "generate", "x", "--model", str(tmp_path), "--frames", "80"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"sana-video: error: --model {tmp_path}: not a pipeline folder (no model_index.json there)"
    )


def test_a_models_own_defaults_apply(t2v_dir, tmp_path, capsys):
    """sana_video.json in the model folder sets what the user does not: size, length, negative prompt."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(t2v_dir, model)
    (model / "sana_video.json").write_text(json.dumps({"height": 32, "width": 32, "frames": 9, "steps": 2,
                                                       "negative_prompt": "", "motion_score": 5}))  # fmt: skip
    code, *_ = _generate(
        capsys, "a cat", "--model", str(model), "--seed", "1", "--out", str(tmp_path / "v.mp4"), "--quiet"
    )
    assert code == 0
    record = json.loads((tmp_path / "v.json").read_text())
    assert (record["height"], record["width"], record["frames"], record["steps"]) == (32, 32, 9, 2)
    assert record["negative_prompt"] == "" and record["full_prompt"] == "a cat motion score: 5."
    # What the user gives wins.
    code, *_ = _generate(
        capsys, "a cat", "--model", str(model), "--frames", "5", "--out", str(tmp_path / "w.mp4"), "--quiet"
    )
    assert code == 0 and json.loads((tmp_path / "w.json").read_text())["frames"] == 5


def test_a_model_trained_without_the_instruction_is_prompted_without_it(
    t2v_dir, tmp_path, capsys, monkeypatch
):
    """sana_video.json "complex_human_instruction": false (the small model's) drops the CHI; --chi restores it."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(t2v_dir, model)
    (model / "sana_video.json").write_text(json.dumps({"complex_human_instruction": False}))
    seen, encode = [], SanaVideoPipeline.encode_prompt

    def spy(self, *args, **kwargs):
        if (args[0] if args else kwargs.get("prompt")) is not None:  # not the pipeline's pass-through call
            seen.append(kwargs.get("complex_human_instruction"))
        return encode(self, *args, **kwargs)

    monkeypatch.setattr(SanaVideoPipeline, "encode_prompt", spy)
    for flag, name in (([], "plain"), (["--chi"], "chi")):
        code, *_ = _generate(capsys, "a red circle", "--model", str(model), *SMALL, "--seed", "3", *flag,
                             "--out", str(tmp_path / f"{name}.mp4"), "--quiet")  # fmt: skip
        assert code == 0
    plain, chi = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("plain", "chi"))
    assert plain["complex_human_instruction"] is False and chi["complex_human_instruction"] is True
    assert seen == [None, COMPLEX_HUMAN_INSTRUCTION]


def test_the_bundled_model_is_the_default(t2v_dir, tmp_path, capsys, monkeypatch):
    """Without --model the package's own model folder is used; where there is none, one clear error."""
    import shutil

    import sana_video.weights

    bundled = tmp_path / "bundled"
    shutil.copytree(t2v_dir, bundled)
    (bundled / "sana_video.json").write_text(json.dumps({"height": 32, "width": 32, "frames": 9, "steps": 2}))
    monkeypatch.setattr(sana_video.weights, "SHAPES_MODEL", bundled)
    code, *_ = _generate(capsys, "a red circle", "--seed", "2", "--out", str(tmp_path / "v.mp4"), "--quiet")
    assert code == 0
    record = json.loads((tmp_path / "v.json").read_text())
    assert record["model"] == str(bundled.resolve()) and record["frames"] == 9
    assert read_video(tmp_path / "v.mp4")[0].shape == (9, 32, 32, 3)

    monkeypatch.setattr(sana_video.weights, "SHAPES_MODEL", tmp_path / "missing")
    code, _, err = _generate(capsys, "a red circle", "--out", str(tmp_path / "w.mp4"))
    assert code != 0 and "--model DIR is required" in err and not (tmp_path / "w.mp4").exists()


def test_the_vae_decodes_in_bf16_by_default_only_on_a_cpu_that_has_it(t2v_dir, tmp_path, capsys, monkeypatch):
    """--vae-dtype auto: bf16 where the CPU computes bf16 natively (AMX, AVX512-BF16), else fp32; the record
    says which, and it is the dtype the VAE decoded in."""
    import sana_video.cli
    from sana_video.pipelines.base import SanaVideoPipelineBase

    decoded_in = []
    decode = SanaVideoPipelineBase.decode_latents

    def watched(self, *args, **kwargs):
        decoded_in.append(self.vae.dtype)
        return decode(self, *args, **kwargs)

    monkeypatch.setattr(SanaVideoPipelineBase, "decode_latents", watched)
    cases = [(True, [], "bf16"), (False, [], "fp32"), (True, ["--vae-dtype", "fp32"], "fp32")]
    for i, (native, flags, expected) in enumerate(cases):
        monkeypatch.setattr(sana_video.cli, "_cpu_has_native_bf16", lambda native=native: native)
        out = tmp_path / f"{i}.mp4"
        code, *_ = _generate(capsys, "a red circle", "--model", str(t2v_dir), *SMALL, "--device", "cpu", *flags,
                             "--out", str(out), "--quiet")  # fmt: skip
        assert code == 0
        assert json.loads(out.with_suffix(".json").read_text())["vae_dtype"] == expected
        assert decoded_in[-1] == {"bf16": torch.bfloat16, "fp32": torch.float32}[expected]
