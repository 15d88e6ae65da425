"""The `sana-video` command. Subcommands parse options and print; the work lives in the package."""

from __future__ import annotations

import argparse
import logging
import sys
import time

import sana_video


def _default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _demo(args: argparse.Namespace) -> int:
    """Build a random tiny transformer, run one forward, then the same clip chunk by chunk through the state."""
    import torch

    from sana_video import SanaVideoTransformer3DModel

    torch.manual_seed(args.seed)
    device = torch.device(args.device or _default_device())
    model = SanaVideoTransformer3DModel.from_preset("tiny").to(device).eval()
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    print(
        f"sana-video {sana_video.__version__} demo: a random tiny SANA-Video transformer (no weights are downloaded)"
    )
    print(
        f"model    preset 'tiny': {cfg.num_layers} layers, {cfg.num_attention_heads} heads × {cfg.attention_head_dim}, "
        f"{params:,} parameters, on {device.type}"
    )

    frames, size = args.frames, 16
    latents = torch.randn(1, cfg.in_channels, frames, size, size, device=device)
    text = torch.randn(1, 8, cfg.caption_channels, device=device)
    tokens = frames * (size // cfg.patch_size[1]) * (size // cfg.patch_size[2])
    with torch.no_grad():
        start = time.perf_counter()
        velocity = model(latents, text, timestep=500).sample
        elapsed = (time.perf_counter() - start) * 1e3
    print(
        f"forward  latents {list(latents.shape)} ({frames} latent frames, {tokens} tokens) + text {list(text.shape)} "
        f"at t=500 -> velocity {list(velocity.shape)}, std {velocity.std().item():.3f}, in {elapsed:.1f} ms"
    )

    # Long video: each chunk attends to itself and, through the running state, to all earlier chunks.
    state, sizes = None, []
    with torch.no_grad():
        for first in range(frames):
            out = model(
                latents[:, :, first : first + 1],
                text,
                timestep=500,
                state=state,
                frame_offset=first,
                return_state=True,
            )
            state = out.state
            sizes.append(state.nbytes)
    print(
        f"chunks   the same {frames} frames one chunk at a time, threading a SanaVideoState: "
        f"state size {sizes[0] / 1024:.1f} KiB after chunk 1 and {sizes[-1] / 1024:.1f} KiB after chunk {frames} "
        f"({'constant' if len(set(sizes)) == 1 else 'GROWING'})"
    )
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sana-video", description="SANA-Video text/image-to-video generation."
    )
    parser.add_argument("--version", action="version", version=f"sana-video {sana_video.__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log what the library chooses (fast paths, ...)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run a random tiny model once (no weights needed)")
    demo.add_argument("--device", help="cpu, cuda or mps (default: the best available)")
    demo.add_argument("--frames", type=_positive_int, default=5, help="latent frames (default: 5)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s"
    )
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
