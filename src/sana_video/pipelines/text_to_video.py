"""Text-to-video."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sana_video.pipelines.base import SanaVideoPipelineBase, SanaVideoPipelineOutput
from sana_video.pipelines.text import COMPLEX_HUMAN_INSTRUCTION


class SanaVideoPipeline(SanaVideoPipelineBase):
    """SANA-Video text-to-video, a drop-in for diffusers' `SanaVideoPipeline`.

    Components: tokenizer and text_encoder (Gemma-2), vae (Wan2.1 `AutoencoderKLWan`), transformer
    (ours), scheduler (the official folders: DPM-Solver++ on flow sigmas, shift 8).

        pipe = SanaVideoPipeline.from_pretrained(path, torch_dtype=torch.bfloat16)
        pipe.vae.to(torch.float32)
        video = pipe("a cat and a dog baking a cake motion score: 30.").frames[0]
    """

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] = "",
        num_inference_steps: int = 50,
        timesteps: list[int] | None = None,
        sigmas: list[float] | None = None,
        guidance_scale: float = 6.0,
        num_videos_per_prompt: int = 1,
        height: int = 480,
        width: int = 832,
        frames: int = 81,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        clean_caption: bool = False,
        use_resolution_binning: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("latents",),
        max_sequence_length: int = 300,
        complex_human_instruction: list[str] | None = COMPLEX_HUMAN_INSTRUCTION,
    ) -> SanaVideoPipelineOutput | tuple:
        """Generate videos from text.

        Args:
            prompt: the prompt(s); or pass `prompt_embeds` and `prompt_attention_mask`. Append the
                motion hint yourself (" motion score: 30."), as the model card does.
            negative_prompt: used when guidance_scale > 1 (the model card recommends
                `sana_video.RECOMMENDED_NEGATIVE_PROMPT`).
            num_inference_steps, timesteps, sigmas: the scheduler grid (a count, or custom values).
            guidance_scale: classifier-free guidance; ≤ 1 turns it off.
            num_videos_per_prompt: videos per prompt; video i of prompt p is output p·n + i.
            height, width: pixels, multiples of 16 (VAE 8 × patch 2) unless binning picks the size.
            frames: 4k+1 frames (81 = 5 s at 16 fps); other counts raise with the nearest valid ones.
            eta, generator: passed to the scheduler where it takes them; generator also draws the noise.
            latents: start from these [B·n, C, F', H', W'] latents instead of fresh noise.
            output_type: "pil", "np", "pt" or "latent".
            use_resolution_binning: generate at the trained size closest in aspect ratio, then resize
                and crop back to height × width.
            attention_kwargs: {"scale": s} scales loaded LoRA adapters.
            callback_on_step_end(pipe, i, t, tensors) -> dict: may replace the tensors named in
                callback_on_step_end_tensor_inputs ("latents", "prompt_embeds", "negative_prompt_embeds");
                set `pipe._interrupt = True` in it to stop early.
            max_sequence_length: text tokens the transformer sees (300).
            complex_human_instruction: lines put before the prompt (the official CHI); [] or None
                for none.

        Returns:
            `SanaVideoPipelineOutput` with `.frames`, or `(frames,)` with return_dict=False.
        """
        args = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        return self._generate(**args)
