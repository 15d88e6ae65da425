"""Image-to-video: the first frame is given."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image
import torch

from sana_video.pipelines.base import SanaVideoPipelineBase, SanaVideoPipelineOutput
from sana_video.pipelines.text import COMPLEX_HUMAN_INSTRUCTION
from sana_video.sampling.schedulers import image_to_video_scheduler


class SanaImageToVideoPipeline(SanaVideoPipelineBase):
    """SANA-Video image-to-video, a drop-in for diffusers' `SanaImageToVideoPipeline`.

    The image is VAE-encoded as latent frame 0, which stays fixed: its tokens see timestep 0 and the
    scheduler never updates it. Samples with FlowMatch Euler; loaded from a folder whose scheduler is
    something else (the official folders hold the text-to-video DPM one), it uses FlowMatch Euler at
    shift 8.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        user_scheduler = "scheduler" in kwargs
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        if not user_scheduler:
            pipe.scheduler = image_to_video_scheduler(pipe.scheduler)
        return pipe

    @torch.no_grad()
    def __call__(
        self,
        image: PIL.Image.Image | np.ndarray | torch.Tensor | list,
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
        """Generate videos that start from `image`: a PIL image, an [H, W, 3] array or a [3, H, W] /
        [B, 3, H, W] tensor with values in [0, 1], or a list of them (one per prompt, or one for all). It is resized to the generated size. The other
        arguments are those of `SanaVideoPipeline.__call__`."""
        args = {k: v for k, v in locals().items() if k not in ("self", "__class__", "image")}
        return self._generate(image=image, **args)

    def _condition(self, latents, image, height, width, generator):
        if image is None:
            raise ValueError("image-to-video needs an image")
        if not isinstance(image, (PIL.Image.Image, torch.Tensor, np.ndarray, list)):
            raise ValueError(
                f"image must be a PIL image, an array, a tensor or a list of them (got {type(image).__name__})"
            )
        pixels = self.video_processor.preprocess(image, height=height, width=width)  # [b, 3, H, W] in [-1, 1]
        image_latents = self.encode_image_latents(pixels)  # [b, C, 1, H', W']
        batch = latents.shape[0]
        if batch % image_latents.shape[0]:
            raise ValueError(f"got {image_latents.shape[0]} images for {batch} videos")
        # One image for all videos, or one per prompt (each repeated for its videos).
        image_latents = image_latents.repeat_interleave(batch // image_latents.shape[0], dim=0)
        latents = latents.clone()
        latents[:, :, :1] = image_latents.to(latents.dtype)
        clean_frames = torch.zeros(batch, latents.shape[2], dtype=torch.bool, device=latents.device)
        clean_frames[:, 0] = True
        return latents, clean_frames
