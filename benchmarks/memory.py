"""GPU memory of the memory-saving weight formats: bf16, 8-bit (bitsandbytes) and our FP8.

    python benchmarks/memory.py                     # 2B-480p transformer + a Gemma-2-2B-shaped encoder
    python benchmarks/memory.py --smoke --device cpu   # tiny models: checks the script (no bitsandbytes)

Random weights are saved with save_pretrained and loaded back the way users load the real ones
(`from_pretrained`, with `quantization_config` for bitsandbytes; `quantize_fp8` after loading for FP8).
Per format: the memory the weights take once loaded, the peak during one transformer step at 480×832×81
(CFG batch 2, bf16 activations) or one text encoding (300 tokens), and how long that step took (8-bit
matmuls are not made for speed). bitsandbytes is needed for the 8-bit rows (43 MB wheel; carry it).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time

import torch


def gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def measure(load, run, device) -> tuple[float, float, float]:
    """(weights bytes, peak bytes during run, run seconds) of the model that load() returns."""
    gc.collect()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
    model = load()
    weights = (
        (torch.cuda.memory_allocated() - base)
        if cuda
        else sum(p.numel() * p.element_size() for p in model.parameters())
    )
    with torch.no_grad():
        run(model)  # warm-up
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        run(model)
        if cuda:
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() - base) if cuda else float("nan")
    del model
    return weights, peak, seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)

    from diffusers import BitsAndBytesConfig as DiffusersBnb
    from shapes import gemma_config
    from transformers import BitsAndBytesConfig, Gemma2Model

    from sana_video import SanaVideoTransformer3DModel
    from sana_video.model.fp8 import quantize_fp8
    from sana_video.model.presets import preset

    if args.smoke:
        config, latent, text_len = preset("tiny"), (5, 16, 16), 8
    else:
        config, latent, text_len = preset("2b-480p"), (21, 60, 104), 300
    try:
        import bitsandbytes  # noqa: F401

        have_bnb = device.type == "cuda"
    except ImportError:
        have_bnb = False

    folder = tempfile.mkdtemp()
    torch.manual_seed(0)
    SanaVideoTransformer3DModel(**config).to(torch.bfloat16).save_pretrained(f"{folder}/transformer")
    Gemma2Model(gemma_config(args.smoke, config["caption_channels"])).to(torch.bfloat16).save_pretrained(
        f"{folder}/text_encoder"
    )

    gen = torch.Generator(device).manual_seed(0)
    x = torch.randn(2, config["in_channels"], *latent, generator=gen, device=device, dtype=torch.bfloat16)
    text = torch.randn(
        2, text_len, config["caption_channels"], generator=gen, device=device, dtype=torch.bfloat16
    )
    t = torch.full((2,), 999.0, device=device)
    ids = torch.randint(0, 64, (1, text_len), generator=gen, device=device)

    def transformer(quantization=None, fp8=False):
        def load():
            model = SanaVideoTransformer3DModel.from_pretrained(
                f"{folder}/transformer", torch_dtype=torch.bfloat16, quantization_config=quantization
            )
            model = model if quantization is not None else model.to(device)  # bitsandbytes places it
            if fp8:
                quantize_fp8(model)  # in place
            return model

        return load, lambda model: model(x, text, t)

    def text_encoder(quantization=None):
        def load():
            model = Gemma2Model.from_pretrained(f"{folder}/text_encoder", torch_dtype=torch.bfloat16,
                                                quantization_config=quantization)  # fmt: skip
            return model if quantization is not None else model.to(device)

        return load, lambda model: model(input_ids=ids)

    cases = [("transformer", "bf16", transformer()), ("transformer", "fp8 (ours)", transformer(fp8=True))]
    if have_bnb:
        cases.append(("transformer", "8-bit (bitsandbytes)", transformer(DiffusersBnb(load_in_8bit=True))))
    cases.append(("text encoder", "bf16", text_encoder()))
    if have_bnb:
        cases.append(
            ("text encoder", "8-bit (bitsandbytes)", text_encoder(BitsAndBytesConfig(load_in_8bit=True)))
        )
    rows = []
    for model, form, (load, run) in cases:
        try:
            rows.append((model, form, *measure(load, run, device)))
        except Exception as error:  # a format that fails is a result too
            rows.append((model, form, float("nan"), float("nan"), float("nan")))
            print(f"{model} {form}: {type(error).__name__}: {str(error)[:300]}")
        print(" | ".join(map(str, rows[-1])), flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    print(f"\n{name}, torch {torch.__version__}; bitsandbytes {'used' if have_bnb else 'not available'}")
    print(f"{'model':14s} {'format':22s} {'weights GiB':>11s} {'peak GiB':>9s} {'step s':>8s}")
    for model, form, weights, peak, seconds in rows:
        print(f"{model:14s} {form:22s} {gib(weights):>11s} {gib(peak):>9s} {seconds:8.3f}")


if __name__ == "__main__":
    main()
