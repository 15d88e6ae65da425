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

from sana_video._transfer import to_host


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
    """vae: diffusers' AutoencoderKLWan. frames_per_call: latent frames the decoder takes per call after
    the video's first frame (which goes alone: the temporal upsamplers treat it apart). 1 is diffusers'
    way; more run fewer, larger kernels for the same frames up to float rounding (fp32 ~1e-6), holding
    that many frames' activations at once."""

    def __init__(self, vae, frames_per_call: int = 1):
        if frames_per_call < 1:
            raise ValueError(f"frames_per_call must be at least 1, got {frames_per_call}")
        if not hasattr(vae, "decoder") or not hasattr(vae, "_cached_conv_counts"):
            raise ValueError(
                f"streaming decode needs the causal Wan VAE (AutoencoderKLWan), not {type(vae).__name__}"
            )
        self.vae = vae
        self.frames_per_call = frames_per_call
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
        cl = x.is_contiguous(memory_format=torch.channels_last_3d)  # channels-last weights (optimize())
        layout = torch.channels_last_3d if cl else torch.contiguous_format
        out, i = [], 0
        while i < x.shape[2]:
            first = self.decoded == 0
            # Contiguous: a slice's strides depend on the chunk's length, and a compiled decoder (static
            # shapes) would recompile for every new one until torch.compile's limit, then run eager.
            part = x[:, :, i : i + (1 if first else self.frames_per_call)].contiguous(memory_format=layout)
            out.append(vae.decoder(part, feat_cache=self.cache, feat_idx=[0], first_chunk=first))
            self.decoded += part.shape[2]
            i += part.shape[2]
        window = latents if self._window is None else torch.cat([self._window, latents], dim=2)
        self._window = window[:, :, -self.window_size :]
        video = torch.cat(out, dim=2)
        if vae.config.get("patch_size") is not None:
            from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

            video = unpatchify(video, patch_size=vae.config.patch_size)
        return video.clamp(-1.0, 1.0)

    def state_dict(self) -> dict:
        """What rebuilds the decoder's cache: the recent latent frames and how many were decoded."""
        return {"decoded": self.decoded, "window": to_host({"window": self._window})["window"]}

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


def make_upsamplers_compilable(decoder: torch.nn.Module) -> int:
    """Give each temporal upsampler (diffusers' `WanResample`, mode "upsample3d") of a Wan VAE decoder a
    forward that torch.compile can trace; returns how many were changed. Same math, bit for bit.

    The cause: from the third latent frame on, diffusers' upsampler compares its cached frames with the
    string sentinel "Rep" (`tensor != "Rep"`). Eager Python gets NotImplemented and falls back to False;
    Dynamo in torch 2.11 instead breaks the graph ("torch.* op returned non-Tensor"), inside the
    decoder's loop over its blocks, so it gives up on the whole decoder frame and compiles every
    submodule's forward on its own — one code object for all causal convs, recompiled for each channel
    count until torch.compile's recompile limit, then eager (seen on an H100: 132 s of warm-up, and a
    slower decode than not compiling). Here the sentinel is told apart by type instead.
    """
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanResample

    changed = 0
    for module in decoder.modules():
        if isinstance(module, WanResample) and module.mode == "upsample3d":
            module.forward = _upsample3d_forward.__get__(module)
            changed += 1
    return changed


def _upsample3d_forward(self, x: torch.Tensor, feat_cache=None, feat_idx=None) -> torch.Tensor:
    """The temporal upsampler: x [B, C, t, H, W] -> [B, C', 2t, 2H, 2W] (t frames, 1 for the very first
    latent frame). Its causal time conv (kernel 3) doubles the channels, which become frame pairs; the
    cache slot holds None before the first frame, then the sentinel "Rep" (the first frame is not doubled
    in time, and the conv sees zeros before the second), then the last 2 input frames."""
    batch, channels, frames, height, width = x.shape
    if feat_cache is not None:
        feat_idx = feat_idx if feat_idx is not None else [0]
        slot = feat_idx[0]
        held = feat_cache[slot]
        if held is None:  # the video's first latent frame: spatial upsampling only
            feat_cache[slot] = "Rep"
        else:
            after_first = isinstance(held, str)  # the sentinel: nothing real cached yet
            cache = x[:, :, -2:].clone()
            if cache.shape[2] < 2:  # keep two frames: pad with the previous one (zeros after the first)
                previous = torch.zeros_like(cache) if after_first else held[:, :, -1:].to(cache.device)
                cache = torch.cat([previous, cache], dim=2)
            x = self.time_conv(x) if after_first else self.time_conv(x, held)
            feat_cache[slot] = cache
            # [B, 2·C, t] → [B, C, t, 2]: the conv's two channel halves are each frame's two output frames
            x = x.view(batch, 2, channels, frames, height, width).permute(0, 2, 3, 1, 4, 5)
            x = x.reshape(batch, channels, 2 * frames, height, width)
        feat_idx[0] += 1
    frames = x.shape[2]
    x = x.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
    x = self.resample(x)  # nearest-exact ×2 and a 3×3 conv, per frame
    return x.view(batch, frames, *x.shape[1:]).permute(0, 2, 1, 3, 4)


# cuDNN's 3D conv beats three 2D ones from 192 input channels on (H200, 480p shapes, probe_hopper.py:
# 192 → 192 at 240×416, 1.48 against 1.67 ms; 384 → 384 at 120×208, 0.68 against 0.74 ms) and loses
# at the full-resolution 96 (3.11 against 2.36 ms).
SPLIT_BELOW_CHANNELS = 128


def make_causal_convs_fast(decoder: torch.nn.Module) -> int:
    """Give each causal 3D conv (diffusers' `WanCausalConv3d`) of a Wan VAE decoder a faster forward;
    returns how many were changed. The same convolution, so the same frames up to float rounding.

    Two changes. The spatial zero padding happens inside the convolution instead of in a padded copy of
    every activation (diffusers pads with `F.pad` first). And for a single video with channels-last
    weights (what `optimize()` sets up; on CUDA the activations follow them), a conv of temporal kernel
    k with fewer than SPLIT_BELOW_CHANNELS inputs runs as k 2D convolutions over the frames — one per
    temporal tap, each reading a shifted view of the same frames, no copies — summed. That is the
    decoder's full-resolution stage (96 channels, 480×832 at 480p), where cuDNN's 2D convs beat its 3D
    conv by a quarter. In bf16 the sum rounds once more than a 3D conv's fp32 accumulator (49.8 dB
    PSNR between the two decodes on random weights). Measured on an H200: a 10-latent-frame chunk
    decodes in 408 ms instead of 497 with every 3D conv split (compiled, bf16; docs/PERFORMANCE.md).
    """
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    changed = 0
    for module in decoder.modules():
        if isinstance(module, WanCausalConv3d):
            module.forward = _causal_conv_forward.__get__(module)
            changed += 1
    return changed


def _causal_conv_forward(self, x: torch.Tensor, cache_x: torch.Tensor | None = None) -> torch.Tensor:
    """x [B, C, t, H, W] -> [B, C', t, H, W]: zeros (or the cached last input frames) before the first
    frame in time, zero padding in space; the module's `_padding` is diffusers' F.pad tuple."""
    import torch.nn.functional as F

    pad_w, _, pad_h, _, pad_t, _ = self._padding
    if cache_x is not None and pad_t > 0:
        x = torch.cat([cache_x.to(x.device), x], dim=2)
        pad_t -= cache_x.shape[2]
    if pad_t > 0:
        x = F.pad(x, (0, 0, 0, 0, pad_t, 0))
    taps = self.kernel_size[0]
    plain = self.stride == (1, 1, 1) and self.dilation == (1, 1, 1) and self.groups == 1
    channels_last = self.weight.is_contiguous(memory_format=torch.channels_last_3d)  # as optimize() sets
    narrow = self.in_channels < SPLIT_BELOW_CHANNELS
    if taps == 1 or not plain or not narrow or x.shape[0] != 1 or not channels_last:
        return F.conv3d(x, self.weight, self.bias, self.stride, (0, pad_h, pad_w), self.dilation, self.groups)
    frames = x[0].transpose(0, 1)  # [t, C, H, W]: a view, channels-last 2D when x is channels-last 3D
    count = frames.shape[0] - taps + 1
    out = F.conv2d(frames[taps - 1 :], self.weight[:, :, taps - 1], self.bias, padding=(pad_h, pad_w))
    for tap in range(taps - 2, -1, -1):  # the tap on the newest frame came first, with the bias
        out += F.conv2d(frames[tap : tap + count], self.weight[:, :, tap], padding=(pad_h, pad_w))
    return out.transpose(0, 1).unsqueeze(0)  # [1, C', t, H, W], channels-last 3D: a view
