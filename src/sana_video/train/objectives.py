"""What each model is trained on: the transformer (flow matching, bidirectional or chunk-causal), the VAE
(reconstruction), LoRA adapters (flow matching on a user's videos)."""

from __future__ import annotations

import torch

from sana_video.pipelines.text import COMPLEX_HUMAN_INSTRUCTION, motion_prompt
from sana_video.sampling.long import split_chunks
from sana_video.train.flow import chunked_flow_matching_loss, flow_matching_loss, sample_sigmas


class TransformerObjective:
    """Flow matching for the pipeline's transformer, with text encoded exactly as at inference.

    - captions get the motion hint (a random score from `motion_scores`) and the CHI, as the pipelines
      add them; with probability `text_dropout` a caption becomes "" without CHI (the pipelines' negative
      prompt), so classifier-free guidance works;
    - with probability `chunked_fraction` a batch is trained chunk-causally through the state (the
      long-video mode): chunks of `chunk_frames` latent frames with non-decreasing σ, a random number of
      leading chunks clean (σ = 0) as the long-video sampler's context is;
    - with probability `image_fraction` latent frame 0 is given (σ = 0, no loss), as image-to-video and
      the long pipeline's image start give it.

    Batches are (videos, captions), or with `encoded` (normalized latents, captions) as `normalize`
    makes them (`train.latent_cache`).
    """

    def __init__(self, pipe, *, shift: float = 3.0, text_dropout: float = 0.1, chunked_fraction: float = 0.3,
                 image_fraction: float = 0.0, chunk_frames: int = 3, motion_scores=(10, 30),
                 max_sequence_length: int = 300,
                 complex_human_instruction: list[str] | None = COMPLEX_HUMAN_INSTRUCTION,
                 encoded: bool = False):  # fmt: skip
        self.pipe, self.shift, self.text_dropout, self.encoded = pipe, shift, text_dropout, encoded
        self.chunked_fraction, self.image_fraction = chunked_fraction, image_fraction
        self.chunk_frames, self.motion_scores = chunk_frames, motion_scores
        self.max_sequence_length = max_sequence_length
        self.complex_human_instruction = complex_human_instruction

    @torch.no_grad()
    def encode(self, videos: torch.Tensor, captions: list[str], generator: torch.Generator):
        pipe, device = self.pipe, self.pipe.transformer.device
        if self.encoded:
            latents = videos.to(device).float()
        else:
            latents = self.normalize(pipe.vae.encode(videos.to(device, pipe.vae.dtype)).latent_dist.mode())
        dropped = torch.rand(len(captions), generator=generator) < self.text_dropout
        scores = torch.randint(len(self.motion_scores), (len(captions),), generator=generator)
        texts = [motion_prompt(c, self.motion_scores[s]) for c, s in zip(captions, scores.tolist())]
        embeds, mask, *_ = pipe.encode_prompt(texts, False, device=device, max_sequence_length=self.max_sequence_length,
                                              complex_human_instruction=self.complex_human_instruction)  # fmt: skip
        if dropped.any():
            empty, empty_mask, *_ = pipe.encode_prompt([""] * int(dropped.sum()), False, device=device,
                                                       max_sequence_length=self.max_sequence_length,
                                                       complex_human_instruction=None)  # fmt: skip
            embeds, mask = embeds.clone(), mask.clone()
            embeds[dropped.to(device)], mask[dropped.to(device)] = empty.to(embeds.dtype), empty_mask
        return latents, embeds, mask

    def normalize(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE posterior means -> the latents the transformer sees (the pipelines' normalization)."""
        mean, inv_std = self.pipe._latent_stats(latents.device, latents.dtype)
        return ((latents - mean) * inv_std).float()

    def __call__(self, batch, generator: torch.Generator) -> torch.Tensor:
        videos, captions = batch
        latents, text, mask = self.encode(videos, list(captions), generator)
        batch_size, frames, device = latents.shape[0], latents.shape[2], latents.device
        noise = torch.randn(latents.shape, generator=generator).to(device)
        chunked = torch.rand((), generator=generator).item() < self.chunked_fraction
        image = torch.rand((), generator=generator).item() < self.image_fraction
        chunks = split_chunks(frames, self.chunk_frames)
        chunked = chunked and len(chunks) > 1
        if chunked:
            sigmas = torch.stack([sample_sigmas(batch_size, generator, shift=self.shift) for _ in chunks], 1)
            sigmas = sigmas.sort(dim=1).values  # non-decreasing over chunks
            # The first `clean` chunks are given (σ = 0): their state is what the long-video sampler's
            # t = 0 pass on a finished chunk hands to the next one.
            clean = int(torch.randint(len(chunks), (), generator=generator))
            sigmas[:, :clean] = 0
            sigma = sigmas.repeat_interleave(torch.tensor(chunks), dim=1)
        else:
            sigma = sample_sigmas(batch_size, generator, shift=self.shift)[:, None].expand(-1, frames).clone()
        if image:  # image-to-video: latent frame 0 is the given image, seen at t = 0
            sigma[:, 0] = 0
        sigma = sigma.to(device)
        weight = (sigma > 0).float()  # given frames carry no loss (their velocity is unknowable)

        predict = self.pipe.predict  # per-frame timesteps expanded to the tokens, as the samplers do

        if chunked:

            def model(x, t, state, offset):
                return predict(x, t, text, mask, state=state, frame_offset=offset, return_state=True)

            return chunked_flow_matching_loss(model, latents, chunks, sigma, noise, weight)

        def velocity(x, t):
            return predict(x, t, text, mask)[0]

        if not image:  # one timestep per sample, as the text-to-video sampler gives
            return flow_matching_loss(velocity, latents, sigma[:, 0], noise)
        return flow_matching_loss(velocity, latents, sigma, noise, weight)


class VAEObjective:
    """Reconstruction: L1 + MSE on pixels.

    By default the decoder reads the posterior mean (a plain autoencoder; the pipelines encode with
    `latent_dist.mode()` and normalize latents by measured statistics). With `sample_posterior` it reads a
    posterior sample and a small KL towards N(0, 1) is added — measured on the shapes videos, that noise
    (std 1 at initialisation against latents of std ~0.2) kept a small Wan VAE at the mean frame for
    2000 steps, so the small model does not use it.

    With `object_weight` = λ, each pixel's loss is weighted by 1 + λ·d and the weighted mean is taken, d
    being the RGB distance (colours in [0, 1]) of its target from the frame's median colour, which on the
    shapes videos is the background. Unweighted, every VAE of builds 3-5 let green and cyan decode as the
    grey background; weighted by chroma alone, white was lost instead (docs/TRAINING.md).
    """

    def __init__(
        self, vae, kl_weight: float = 1e-6, sample_posterior: bool = False, object_weight: float = 0.0
    ):
        self.vae, self.kl_weight, self.sample_posterior = vae, kl_weight, sample_posterior
        self.object_weight = object_weight

    def __call__(self, batch, generator: torch.Generator) -> torch.Tensor:
        videos = batch[0].to(self.vae.device)
        posterior = self.vae.encode(videos).latent_dist
        z = posterior.mean
        if self.sample_posterior:
            z = z + posterior.std * torch.randn(z.shape, generator=generator).to(videos.device)
        reconstruction = self.vae.decode(z).sample
        loss = reconstruction_loss(reconstruction, videos, self.object_weight)
        if self.sample_posterior:
            loss = loss + self.kl_weight * posterior.kl().mean() / videos[0].numel()
        return loss


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor, object_weight: float = 0.0):
    """L1 + MSE between videos [B, 3, F, H, W] in [-1, 1]; with `object_weight`, pixels weighted by
    1 + object_weight · (RGB distance of the target from its frame's median colour, in [0, 1] units)."""
    target = target.float()
    error = (reconstruction.float() - target).abs()
    per_value = error + error.square()
    if not object_weight:
        return per_value.mean()
    median = target.flatten(3).median(dim=3).values[..., None, None]  # [B, 3, F, 1, 1]
    distance = (target - median).norm(dim=1, keepdim=True) / 2
    weight = 1 + object_weight * distance
    return (per_value * weight).sum() / (weight.sum() * target.shape[1])


@torch.no_grad()
def latent_statistics(vae, dataset, count: int = 64, batch_size: int = 8) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior means over `count` clips (the pipelines' normalization)."""
    sums = None
    for start in range(0, count, batch_size):
        videos = torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, count))])
        z = vae.encode(videos.to(vae.device, vae.dtype)).latent_dist.mode().float()
        flat = z.transpose(0, 1).reshape(z.shape[1], -1)
        part = torch.stack([flat.sum(1), flat.pow(2).sum(1), torch.full_like(flat[:, 0], flat.shape[1])])
        sums = part if sums is None else sums + part
    mean = sums[0] / sums[2]
    std = (sums[1] / sums[2] - mean.pow(2)).clamp_min(1e-8).sqrt()
    return mean.tolist(), std.tolist()
