"""Where the small model's training time goes on a GPU: rendering clips, encoding them, and the
transformer's step on encoded clips (plain, chunk-causal and image batches) at a few batch sizes.

    PYTHONPATH=src python benchmarks/small_training_step.py VAE_FOLDER [DEVICE CLIPS]
"""

from __future__ import annotations

import sys
import time

import torch

from sana_video import SanaVideoPipeline
from sana_video.train.components import make_text_encoder, make_tokenizer, make_transformer, vocabulary
from sana_video.train.data import ShapesDataset
from sana_video.train.latent_cache import LatentClips, encode_clips
from sana_video.train.objectives import TransformerObjective
from sana_video.train.small_model import SmallModelRecipe


def main() -> None:
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler

    recipe = SmallModelRecipe()
    device, count = (sys.argv[2], int(sys.argv[3])) if len(sys.argv) > 3 else ("cuda", 512)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    vae = AutoencoderKLWan.from_pretrained(sys.argv[1]).to(device).eval().requires_grad_(False)
    data = ShapesDataset(frames=recipe.frames, height=recipe.size, width=recipe.size, max_objects=1,
                         backgrounds=recipe.backgrounds, sizes=recipe.object_sizes)  # fmt: skip
    rows = []
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(data, range(2 * count)), batch_size=32, num_workers=14
    )
    start = time.perf_counter()
    for _ in loader:
        pass
    rows.append(("render, 14 workers", 2 * count / (time.perf_counter() - start), "clips/s"))
    words = vocabulary()
    transformer = make_transformer(vae.config.z_dim, recipe.text_hidden, sample_size=recipe.size // 8,
                                   patch_size=(1, recipe.patch, recipe.patch)).to(device)  # fmt: skip
    pipe = SanaVideoPipeline(make_tokenizer(words), make_text_encoder(len(words), recipe.text_hidden).to(device),
                             vae, transformer, FlowMatchEulerDiscreteScheduler())  # fmt: skip
    normalize = TransformerObjective(pipe).normalize
    for batch in (32, 64):
        encode_clips(vae, data, batch, batch_size=batch, normalize=normalize, progress=False)  # warm-up
        sync()
        start = time.perf_counter()
        clips = encode_clips(
            vae, data, count, batch_size=batch, num_workers=14, normalize=normalize, progress=False
        )
        sync()
        rows.append((f"render + encode, batch {batch}", count / (time.perf_counter() - start), "clips/s"))
    print(f"transformer: {sum(p.numel() for p in transformer.parameters()) / 1e6:.2f} M parameters")
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=1e-4)
    transformer.train()
    for kind, chunked, image in (("plain", 0.0, 0.0), ("chunk-causal", 1.0, 0.0), ("image", 0.0, 1.0)):
        objective = TransformerObjective(pipe, chunked_fraction=chunked, image_fraction=image, encoded=True,
                                         complex_human_instruction=None)  # fmt: skip
        for batch in (32, 64):
            generator = torch.Generator().manual_seed(0)
            for step in range(25):
                if step == 5:
                    sync()
                    start = time.perf_counter()
                indices = [(step * batch + i) % len(clips) for i in range(batch)]
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
                    loss = objective(LatentClips.collate(clips.__getitems__(indices)), generator)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            sync()
            rows.append(
                (f"transformer step, {kind}, batch {batch}", 20 / (time.perf_counter() - start), "steps/s")
            )
    print(torch.cuda.get_device_name() if device == "cuda" else device)
    for name, value, unit in rows:
        print(f"{name:<40} {value:8.1f} {unit}")


if __name__ == "__main__":
    main()
