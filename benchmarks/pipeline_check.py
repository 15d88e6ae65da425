"""GPU checks of the pipelines on tiny random components (run through the device tool).

    python benchmarks/pipeline_check.py [--device cuda]

Compares our pipelines with diffusers' on the same saved folder on the GPU, and checks the memory
options (model CPU offload, the text encoder on another device, VAE tiling/slicing) and 8-bit
loading with bitsandbytes against a plain run. Prints one line per check.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.pipelines.components

from tests.pipelines.components import save_diffusers_pipeline

KW = dict(num_inference_steps=3, height=32, width=32, frames=9, max_sequence_length=16, output_type="pt",
          use_resolution_binning=False, negative_prompt="")  # fmt: skip


def run(pipe, seed=0, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    return pipe(**{**KW, **kwargs}, generator=torch.Generator().manual_seed(seed)).frames.float().cpu()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = args.device
    from diffusers import SanaImageToVideoPipeline as DI2V
    from diffusers import SanaVideoPipeline as DT2V

    from sana_video import SanaImageToVideoPipeline, SanaVideoPipeline, SanaVideoTransformer3DModel

    tmp = Path(tempfile.mkdtemp())
    t2v, i2v = save_diffusers_pipeline(tmp / "t2v", "t2v"), save_diffusers_pipeline(tmp / "i2v", "i2v")
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    prompt = "a red circle moving right"
    results = []

    def check(name, fn):
        try:
            results.append((name, "ok", fn()))
        except Exception as e:  # report and go on: one run checks everything
            traceback.print_exc()
            results.append((name, "FAILED", f"{type(e).__name__}: {e}"[:150]))

    def parity_t2v():
        ref = run(DT2V.from_pretrained(t2v).to(device), prompt=prompt)
        ours = run(SanaVideoPipeline.from_pretrained(t2v).to(device), prompt=prompt)
        err = (ref - ours).abs().max().item()
        assert err <= 1e-4, err
        return f"max |ours − diffusers| = {err:.1e}"

    def parity_i2v():
        ref = run(DI2V.from_pretrained(i2v).to(device), prompt=prompt, image=image)
        ours = run(SanaImageToVideoPipeline.from_pretrained(i2v).to(device), prompt=prompt, image=image)
        err = (ref - ours).abs().max().item()
        assert err <= 1e-4, err
        return f"max |ours − diffusers| = {err:.1e}"

    baseline = run(SanaVideoPipeline.from_pretrained(t2v).to(device), prompt=prompt)

    def offload():
        pipe = SanaVideoPipeline.from_pretrained(t2v)
        pipe.enable_model_cpu_offload(device=device)
        err = (run(pipe, prompt=prompt) - baseline).abs().max().item()
        assert err <= 1e-5, err
        return f"max diff vs on-GPU run {err:.1e}"

    def text_encoder_on_cpu():
        pipe = SanaVideoPipeline.from_pretrained(t2v).to(device)
        pipe.text_encoder.to("cpu")
        err = (run(pipe, prompt=prompt) - baseline).abs().max().item()
        assert err <= 1e-5, err
        return f"max diff {err:.1e}"

    def vae_slicing_and_tiling():
        pipe = SanaVideoPipeline.from_pretrained(t2v).to(device)
        pipe.vae.enable_slicing()
        sliced = (
            (
                run(pipe, prompt=[prompt, prompt])
                - run(SanaVideoPipeline.from_pretrained(t2v).to(device), prompt=[prompt, prompt])
            )
            .abs()
            .max()
            .item()
        )
        pipe.vae.enable_tiling(
            tile_sample_min_height=16,
            tile_sample_min_width=16,
            tile_sample_stride_height=8,
            tile_sample_stride_width=8,
        )
        tiled = run(pipe, prompt=prompt)
        assert sliced <= 1e-5 and tiled.shape == baseline.shape
        return f"slicing diff {sliced:.1e}; tiling 16px tiles mean diff {(tiled - baseline).abs().mean().item():.3f}"

    def bf16():
        pipe = SanaVideoPipeline.from_pretrained(
            t2v,
            torch_dtype={
                "transformer": torch.bfloat16,
                "text_encoder": torch.bfloat16,
                "default": torch.float32,
            },
        ).to(device)
        assert pipe.transformer.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32
        err = (run(pipe, prompt=prompt) - baseline).abs().mean().item()
        return f"mean |bf16 − fp32| = {err:.1e}"

    def eight_bit():
        from diffusers import BitsAndBytesConfig as DiffusersBnb
        from transformers import AutoModel
        from transformers import BitsAndBytesConfig as TransformersBnb

        big = save_diffusers_pipeline(tmp / "big", "t2v", num_attention_heads=4, attention_head_dim=64,
                                      cross_attention_head_dim=64, num_cross_attention_heads=4, cross_attention_dim=256)  # fmt: skip
        plain = run(
            SanaVideoPipeline.from_pretrained(big, torch_dtype=torch.float16).to(device), prompt=prompt
        )
        transformer = SanaVideoTransformer3DModel.from_pretrained(
            big,
            subfolder="transformer",
            quantization_config=DiffusersBnb(load_in_8bit=True),
            torch_dtype=torch.float16,
        )
        text_encoder = AutoModel.from_pretrained(
            big,
            subfolder="text_encoder",
            quantization_config=TransformersBnb(load_in_8bit=True),
            torch_dtype=torch.float16,
        )
        pipe = SanaVideoPipeline.from_pretrained(
            big,
            transformer=transformer,
            text_encoder=text_encoder,
            torch_dtype=torch.float16,
            device_map="balanced",
        )
        quantized = run(pipe, prompt=prompt)
        linear8 = sum(type(m).__name__ == "Linear8bitLt" for m in transformer.modules())
        return f"{linear8} Linear8bitLt layers; mean |8-bit − fp16| = {(quantized - plain).abs().mean().item():.1e}"

    for name, fn in [("t2v parity", parity_t2v), ("i2v parity", parity_i2v), ("model cpu offload", offload),
                     ("text encoder on cpu", text_encoder_on_cpu), ("vae slicing/tiling", vae_slicing_and_tiling),
                     ("bf16 transformer+text", bf16), ("8-bit (bitsandbytes)", eight_bit)]:  # fmt: skip
        check(name, fn)
    print(
        f"\ndevice: {torch.cuda.get_device_name() if device == 'cuda' else device}, torch {torch.__version__}"
    )
    for name, status, detail in results:
        print(f"{name:24s} {status:7s} {detail}")


if __name__ == "__main__":
    main()
