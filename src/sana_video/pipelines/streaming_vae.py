"""Decode latent chunks one after another with the Wan VAE, exactly as one decode of the whole video.

The Wan VAE decoder is causal in time: diffusers' `decode` runs it one latent frame at a time, carrying
a cache of each causal convolution's last input frames. `StreamingDecoder` keeps that cache between
calls, so decoding a video chunk by chunk gives the same frames as decoding it at once, in memory that
does not grow with its length.

To resume, the cache itself is too big to checkpoint (3.6 GiB at 480p in fp32), but it is a function of
the last few latent frames only: each causal conv of temporal kernel k looks k − 1 frames back at its
own frame rate, so the decoder sees ⌈Σ (k − 1)/rate⌉ latent frames back (38 for Wan2.1). We keep that
window of latents (16 MiB at 480p) and rebuild the cache by decoding it again: bit for bit the same.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def receptive_field(vae) -> int:
    """Latent frames the decoder's output at one frame depends on, before it (upper bound)."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    rate, frames = 1, 0.0
    for name, module in vae.decoder.named_modules():  # in execution order
        if isinstance(module, WanCausalConv3d) and module.kernel_size[0] > 1:
            frames += (module.kernel_size[0] - 1) / rate
            if name.endswith("time_conv"):  # a temporal upsampler: the frame rate doubles after it
                rate *= 2
    return math.ceil(frames) + 1


class StreamingDecoder:
    def __init__(self, vae):
        if not hasattr(vae, "decoder") or not hasattr(vae, "_cached_conv_counts"):
            raise ValueError(
                f"streaming decode needs the causal Wan VAE (AutoencoderKLWan), not {type(vae).__name__}"
            )
        self.vae = vae
        self.window_size = receptive_field(vae)
        self._reset()

    def _reset(self) -> None:
        self.cache: list[Any] = [None] * self.vae._cached_conv_counts["decoder"]
        self.decoded = 0  # latent frames decoded so far
        self._window: torch.Tensor | None = None  # the last window_size latent frames decoded

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unnormalized latents [B, C, f, H', W'] -> pixels [B, 3, frames, H, W] in [-1, 1]
        (4 frames per latent frame; 1 for the video's first)."""
        vae = self.vae
        latents = latents.to(vae.dtype)
        x = vae.post_quant_conv(latents)  # a 1×1×1 conv: per frame
        out = []
        for i in range(x.shape[2]):
            first = self.decoded == 0
            out.append(
                vae.decoder(x[:, :, i : i + 1], feat_cache=self.cache, feat_idx=[0], first_chunk=first)
            )
            self.decoded += 1
        window = latents if self._window is None else torch.cat([self._window, latents], dim=2)
        self._window = window[:, :, -self.window_size :]
        video = torch.cat(out, dim=2)
        if vae.config.get("patch_size") is not None:
            from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

            video = unpatchify(video, patch_size=vae.config.patch_size)
        return video.clamp(-1.0, 1.0)

    def state_dict(self) -> dict:
        """What rebuilds the decoder's cache: the recent latent frames and how many were decoded."""
        window = None if self._window is None else self._window.detach().cpu()
        return {"decoded": self.decoded, "window": window}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        self._reset()
        window = state["window"]
        if window is None:
            return
        device = next(self.vae.parameters()).device
        if state["decoded"] > window.shape[2]:
            self.decoded = (
                state["decoded"] - window.shape[2]
            )  # not the video's first frame: no first-chunk path
        self.decode(window.to(device))
        self.decoded = state["decoded"]
