"""What the text-to-video and image-to-video pipelines share: loading, prompt encoding, latents, the
sampling set-up and decoding. Each front-end adds only its own inputs."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from diffusers import DiffusionPipeline
from diffusers.loaders import SanaLoraLoaderMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

from sana_video.model import SanaVideoTransformer3DModel
from sana_video.pipelines import sizes
from sana_video.pipelines.streaming_vae import (
    StreamingDecoder,
    make_causal_convs_fast,
    make_upsamplers_compilable,
)
from sana_video.pipelines.text import encode_prompts
from sana_video.sampling import classifier_free_guidance, sample, set_timesteps
from sana_video.sampling.schedulers import step_kwargs

logger = logging.getLogger(__name__)

# Arguments of DiffusionPipeline.from_pretrained that also apply to loading the transformer alone.
_SHARED_LOAD_ARGS = ("variant", "revision", "cache_dir", "local_files_only", "token", "use_safetensors")


@dataclass
class SanaVideoPipelineOutput(BaseOutput):
    """`frames`: a list (one per video) of PIL frame lists for "pil"; [B, F, H, W, 3] for "np";
    [B, F, 3, H, W] for "pt"; or the latents [B, C, F', H', W'] for "latent"."""

    frames: Any


class SanaVideoPipelineBase(DiffusionPipeline, SanaLoraLoaderMixin):
    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _optional_components: ClassVar[list[str]] = ["tokenizer", "text_encoder"]
    _callback_tensor_inputs: ClassVar[list[str]] = ["latents", "prompt_embeds", "negative_prompt_embeds"]
    # Latent frames per Wan VAE decoder call (`StreamingDecoder`); 1 decodes as diffusers does.
    vae_frames_per_call: int = 1

    def __init__(self, tokenizer, text_encoder, vae, transformer: SanaVideoTransformer3DModel, scheduler):
        super().__init__()
        self.register_modules(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            transformer=transformer,
            scheduler=scheduler,
        )
        config = vae.config if vae is not None else {}
        self.vae_scale_factor_temporal = (
            config.get("scale_factor_temporal") or config.get("temporal_compression_ratio") or 4
        )
        self.vae_scale_factor_spatial = (
            config.get("scale_factor_spatial") or config.get("spatial_compression_ratio") or 8
        )
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)
        self._interrupt = False
        self._attention_kwargs = None

    # Loading and saving

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load a diffusers-format folder (also one written by diffusers itself) with our transformer."""
        if "transformer" not in kwargs:
            dtype = kwargs.get("torch_dtype")
            if isinstance(dtype, dict):
                dtype = dtype.get("transformer", dtype.get("default"))
            shared = {k: kwargs[k] for k in _SHARED_LOAD_ARGS if k in kwargs}
            kwargs["transformer"] = SanaVideoTransformer3DModel.from_pretrained(
                pretrained_model_name_or_path, subfolder="transformer", torch_dtype=dtype, **shared
            )
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as diffusers does. model_index.json names diffusers' transformer class (ours is
        weight-identical), so the folder also loads in diffusers without this package."""
        super().save_pretrained(save_directory, *args, **kwargs)
        index_path = Path(save_directory) / "model_index.json"
        index = json.loads(index_path.read_text())
        if index.get("transformer", [None])[0] == "sana_video":
            index["transformer"] = ["diffusers", "SanaVideoTransformer3DModel"]
            index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")

    # Speed

    def optimize(
        self,
        compile: bool = True,
        vae_dtype: torch.dtype | None = torch.bfloat16,
        channels_last: bool = True,
        fp8: bool = False,
        vae_frames_per_call: int | None = None,
        vae_fast_convs: bool = True,
        cuda_graphs: bool = False,
    ):
        """Trade a little exactness for speed (measured on an H200 in docs/PERFORMANCE.md).

        compile: `torch.compile` the transformer's blocks (one graph for all, no graph breaks) and the VAE
            decoder; the first calls compile (seconds to a minute).
        vae_dtype: cast the VAE (bf16 decodes 1.5× faster than fp32; 48.5 dB PSNR between them on
            random weights).
        channels_last: channels-last memory for the VAE's 3D convolution weights (another 10 %).
        fp8: float8 matmuls in the transformer's blocks (`model.fp8.quantize_fp8`: e4m3 weights, per-token
            activation scales). Fast on Hopper and Ada; elsewhere it runs an fp32 emulation (slower than
            without). Output change: ~2 % relative on the tiny test model (docs/PERFORMANCE.md for real ones).
        vae_frames_per_call: latent frames per VAE decoder call (diffusers decodes one at a time): the same
            frames up to float rounding, holding that many frames' activations. Measured: ~6 % faster
            eager, ~2 % compiled, at 2–10× the decode memory — so the default stays 1.
        vae_fast_convs: the VAE decoder's causal 3D convs pad inside the convolution and, with
            channels-last weights, run as one 2D conv per temporal tap (`make_causal_convs_fast`).
        cuda_graphs: replay the transformer's forward from CUDA graphs (`model.cuda_graphs`), one
            captured per input shape on first use. Saves the host's launch time between kernels; holds the
            forward's activations in GPU memory between calls (`release_cuda_graphs()` frees them). Long
            videos' chunks run without. Graphs record the model as it is: call `optimize` after
            loading weights (adapters loaded, removed or re-weighted later are captured anew).
        """
        if vae_frames_per_call is not None and vae_frames_per_call < 1:  # before changing anything
            raise ValueError(f"vae_frames_per_call must be at least 1, got {vae_frames_per_call}")
        if fp8:
            from sana_video.model.fp8 import quantize_fp8

            quantize_fp8(self.transformer)
        if vae_frames_per_call is not None:
            self.vae_frames_per_call = vae_frames_per_call
        if vae_dtype is not None:
            self.vae.to(dtype=vae_dtype)
        layout = torch.channels_last_3d if channels_last else torch.contiguous_format
        for module in self.vae.modules():
            if isinstance(module, torch.nn.Conv3d):
                module.weight.data = module.weight.data.to(memory_format=layout)
        if vae_fast_convs:
            make_causal_convs_fast(self.vae.decoder)
        if compile:
            self.transformer.compile_repeated_blocks(
                fullgraph=True, dynamic=False
            )  # a few fixed shapes per video
            make_upsamplers_compilable(self.vae.decoder)  # else torch 2.11 gives up on the decoder's graph
            self.vae.decoder.compile(dynamic=False)  # a few fixed shapes: first frame, later ones
        self.release_cuda_graphs()
        if cuda_graphs:
            from sana_video.model.cuda_graphs import CUDAGraphTransformer

            self._cuda_graphs = CUDAGraphTransformer(self.transformer)
        return self

    _cuda_graphs = None  # a CUDAGraphTransformer once `optimize(cuda_graphs=True)` made one

    def release_cuda_graphs(self) -> None:
        """Drop the transformer's CUDA graphs and the memory they hold (later calls run without)."""
        if self._cuda_graphs is not None:
            self._cuda_graphs.release()
        self._cuda_graphs = None

    # Text

    @torch.no_grad()
    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        do_classifier_free_guidance: bool = True,
        negative_prompt: str | list[str] = "",
        num_videos_per_prompt: int = 1,
        device: torch.device | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
        clean_caption: bool = False,
        max_sequence_length: int = 300,
        complex_human_instruction: list[str] | None = None,
        lora_scale: float | None = None,
    ):
        """Encode prompts (and the negative prompts, for guidance), each repeated num_videos_per_prompt
        times. Returns (prompt_embeds, prompt_attention_mask, negative_prompt_embeds, negative_mask)."""
        device = device or self._execution_device
        if prompt_embeds is None:
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            prompt_embeds, prompt_attention_mask = self._encode_text(
                prompts, max_sequence_length, complex_human_instruction, clean_caption, device
            )
        batch = prompt_embeds.shape[0]
        if do_classifier_free_guidance and negative_prompt_embeds is None:
            negatives = (
                [negative_prompt] * batch if isinstance(negative_prompt, str) else list(negative_prompt)
            )
            if len(negatives) != batch:
                raise ValueError(f"got {len(negatives)} negative prompts for {batch} prompts")
            negative_prompt_embeds, negative_prompt_attention_mask = self._encode_text(
                negatives, max_sequence_length, None, clean_caption, device
            )
        if not do_classifier_free_guidance:
            negative_prompt_embeds = negative_prompt_attention_mask = None

        def repeat(t):
            # Video i of prompt p sits at p·n + i, for embeddings and masks alike. (The reference repeats
            # masks in another order, which misaligns them for a batch of prompts with n > 1.)
            return None if t is None else t.to(device).repeat_interleave(num_videos_per_prompt, dim=0)

        return tuple(
            map(
                repeat,
                (
                    prompt_embeds,
                    prompt_attention_mask,
                    negative_prompt_embeds,
                    negative_prompt_attention_mask,
                ),
            )
        )

    def _encode_text(self, prompts, max_sequence_length, instruction, clean, device):
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError(
                "this pipeline has no text encoder or tokenizer: pass prompt_embeds instead of prompts"
            )
        # The text encoder may live elsewhere (another device, offloaded): feed it where it is.
        hooked = hasattr(self.text_encoder, "_hf_hook")
        encoder_device = device if hooked else self.text_encoder.device
        embeds, mask = encode_prompts(
            self.tokenizer,
            self.text_encoder,
            prompts,
            max_sequence_length=max_sequence_length,
            complex_human_instruction=instruction,
            clean=clean,
            device=encoder_device,
        )
        return embeds.to(device), mask.to(device)

    # Generation

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def attention_kwargs(self) -> dict | None:
        return self._attention_kwargs

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this: VAE factor × patch size."""
        return self.vae_scale_factor_spatial * self.transformer.config.patch_size[1]

    def _generate(self, *, image=None, **args) -> SanaVideoPipelineOutput | tuple:
        a = _Args(**args)
        self._guidance_scale, self._attention_kwargs, self._interrupt = (
            a.guidance_scale,
            a.attention_kwargs,
            False,
        )
        height, width = self._check_inputs(a)
        device = self._execution_device

        # 1. Text, with the unconditioned half first for guidance
        text, text_mask, negative, negative_mask = self.encode_prompt(
            a.prompt,
            self.do_classifier_free_guidance,
            negative_prompt=a.negative_prompt,
            num_videos_per_prompt=a.num_videos_per_prompt,
            device=device,
            prompt_embeds=a.prompt_embeds,
            negative_prompt_embeds=a.negative_prompt_embeds,
            prompt_attention_mask=a.prompt_attention_mask,
            negative_prompt_attention_mask=a.negative_prompt_attention_mask,
            clean_caption=a.clean_caption,
            max_sequence_length=a.max_sequence_length,
            complex_human_instruction=a.complex_human_instruction,
        )
        cond = {"prompt_embeds": text, "mask": text_mask, "negative_prompt_embeds": negative}
        if self.do_classifier_free_guidance:
            cond["prompt_embeds"] = torch.cat([negative, text])
            cond["mask"] = torch.cat([negative_mask, text_mask])

        # 2. Timesteps and noise (one fp32 draw over the whole batch)
        timesteps = set_timesteps(self.scheduler, a.num_inference_steps, device, a.timesteps, a.sigmas)
        self._num_timesteps = len(timesteps)
        batch = text.shape[0]
        latent_shape = (
            batch,
            self.transformer.config.in_channels,
            (a.frames - 1) // self.vae_scale_factor_temporal + 1,
            height // self.vae_scale_factor_spatial,
            width // self.vae_scale_factor_spatial,
        )
        if isinstance(a.generator, list) and len(a.generator) != batch:
            raise ValueError(f"got {len(a.generator)} generators for a batch of {batch} videos")
        if a.latents is not None:
            latents = a.latents.to(device=device, dtype=torch.float32)
        else:
            latents = randn_tensor(latent_shape, generator=a.generator, device=device, dtype=torch.float32)
        latents, clean_frames = self._condition(latents, image, height, width, a.generator)

        # 3. Denoise
        velocity = self._transformer_velocity(cond)
        if self.do_classifier_free_guidance:
            velocity = classifier_free_guidance(velocity, a.guidance_scale)
        with self.progress_bar(total=len(timesteps)) as progress:
            latents = sample(
                velocity,
                self.scheduler,
                latents,
                timesteps,
                clean_frames=clean_frames,
                step_kwargs=step_kwargs(self.scheduler, a.generator, a.eta),
                on_step=self._step_callback(a, cond),
                stop=lambda: self._interrupt,
                progress=progress,
            )

        # 4. Decode
        video = (
            latents if a.output_type == "latent" else self.decode_latents(latents, a.output_type, a.resize_to)
        )
        self.maybe_free_model_hooks()
        return SanaVideoPipelineOutput(frames=video) if a.return_dict else (video,)

    def _condition(self, latents, image, height, width, generator):
        """Hook for front-ends with extra inputs: returns (latents, clean_frames [B, F] or None)."""
        return latents, None

    def _transformer_velocity(self, cond: dict):
        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.predict(x, t, cond["prompt_embeds"], cond["mask"])[0]

        return velocity

    def predict(self, x, t, text, text_mask, state=None, frame_offset: int = 0, return_state: bool = False):
        """The transformer's velocity for fp32 latents x (fp32 out), and the next state if asked.

        `t` is one timestep per sample [B] or one per latent frame [B, F] (expanded to the tokens)."""
        transformer = self.transformer
        if t.ndim == 2:
            pt, ph, pw = transformer.config.patch_size
            grid = (x.shape[2] // pt, x.shape[3] // ph, x.shape[4] // pw)
            t = t[:, None, ::pt, None, None].expand(-1, 1, *grid)
        graphs = self._cuda_graphs
        run = graphs if graphs is not None and graphs.model is transformer else transformer
        v, *next_state = run(
            x.to(transformer.dtype),
            encoder_hidden_states=text.to(transformer.dtype),
            timestep=t,
            encoder_attention_mask=text_mask,
            attention_kwargs=self._attention_kwargs,
            state=state,
            frame_offset=frame_offset,
            return_state=return_state,
            return_dict=False,
        )
        v = v.float()
        if transformer.config.out_channels // 2 == transformer.config.in_channels:  # learned sigma
            v = v.chunk(2, dim=1)[0]
        return v, (next_state[0] if return_state else None)

    def _step_callback(self, a: _Args, cond: dict):
        if a.callback_on_step_end is None:
            return None

        def on_step(i, t, latents):
            available = {"latents": latents, **cond}
            outputs = a.callback_on_step_end(
                self, i, t, {k: available[k] for k in a.callback_on_step_end_tensor_inputs}
            )
            outputs = outputs or {}
            for name in ("prompt_embeds", "negative_prompt_embeds"):
                cond[name] = outputs.get(name, cond[name])
            return outputs.get("latents", latents)

        return on_step

    def _latent_stats(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The VAE's per-channel latent mean and 1/std, shaped [1, C, 1, 1, 1]."""
        vae = self.vae
        buffers = dict(vae.named_buffers(recurse=False))
        if "latents_mean" in buffers:
            mean, std = buffers["latents_mean"], buffers["latents_std"]  # LTX-2 video VAE: buffers
        elif vae.config.get("latents_mean") is not None:
            mean, std = torch.tensor(vae.config.latents_mean), torch.tensor(vae.config.latents_std)  # Wan
        else:
            channels = self.transformer.config.in_channels
            mean, std = torch.zeros(channels), torch.ones(channels)
        mean = mean.view(1, -1, 1, 1, 1).to(device, dtype)
        inv_std = 1.0 / std.view(1, -1, 1, 1, 1).to(device, dtype)
        return mean, inv_std

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, output_type: str = "pil", resize_to=None):
        """Normalized latents -> frames. `resize_to` (height, width) resizes and center-crops (binning)."""
        latents = latents.to(self.vae.dtype)
        mean, inv_std = self._latent_stats(latents.device, latents.dtype)
        latents = latents / inv_std + mean  # the reference's arithmetic
        vae = self.vae
        if hasattr(vae, "_cached_conv_counts") and not (vae.use_tiling or vae.use_slicing):
            # diffusers' decode, frame by frame, except that each frame's slice is contiguous: a compiled
            # decoder then needs the same three graphs for any video length (`StreamingDecoder`)
            video = StreamingDecoder(vae, self.vae_frames_per_call).decode(latents)
        else:
            video = self.vae.decode(latents, return_dict=False)[0]
        if resize_to is not None:
            video = self.video_processor.resize_and_crop_tensor(video, resize_to[1], resize_to[0])
        return self.video_processor.postprocess_video(video, output_type=output_type)

    @torch.no_grad()
    def encode_image_latents(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> normalized latents of a one-frame video [B, C, 1, H', W'] (the mode)."""
        pixels = image.unsqueeze(2).to(device=self._execution_device, dtype=self.vae.dtype)
        latents = self.vae.encode(pixels).latent_dist.mode()
        mean, inv_std = self._latent_stats(latents.device, latents.dtype)
        return (latents - mean) * inv_std

    # Input checks (STYLE 14: name the bad value and the rule)

    def _check_inputs(self, a: _Args) -> tuple[int, int]:
        if (a.prompt is None) == (a.prompt_embeds is None):
            raise ValueError("pass exactly one of prompt and prompt_embeds")
        if a.prompt is not None and not isinstance(a.prompt, (str, list)):
            raise ValueError(f"prompt must be a string or a list of strings (got {type(a.prompt).__name__})")
        if a.prompt_embeds is not None and a.prompt_attention_mask is None:
            raise ValueError("prompt_embeds needs prompt_attention_mask")
        if a.negative_prompt_embeds is not None and a.negative_prompt_attention_mask is None:
            raise ValueError("negative_prompt_embeds needs negative_prompt_attention_mask")
        both = a.prompt_embeds is not None and a.negative_prompt_embeds is not None
        if both and a.prompt_embeds.shape != a.negative_prompt_embeds.shape:
            raise ValueError(
                f"prompt_embeds {tuple(a.prompt_embeds.shape)} and negative_prompt_embeds "
                f"{tuple(a.negative_prompt_embeds.shape)} must have the same shape"
            )
        if a.num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be at least 1 (got {a.num_videos_per_prompt})")
        if a.output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"output_type must be 'pil', 'np', 'pt' or 'latent' (got {a.output_type!r})")
        unknown = set(a.callback_on_step_end_tensor_inputs or []) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(
                f"callback_on_step_end_tensor_inputs {sorted(unknown)} not in {self._callback_tensor_inputs}"
            )
        sizes.check_frames(a.frames, self.vae_scale_factor_temporal)
        height, width = a.height, a.width
        if a.use_resolution_binning:
            if height < 1 or width < 1:
                raise ValueError(f"height and width must be positive (got {height}×{width})")
            a.resize_to = (height, width)
            height, width = sizes.binned_size(
                height, width, self.transformer.config.sample_size, self.size_multiple
            )
        sizes.check_size("height", height, self.size_multiple)
        sizes.check_size("width", width, self.size_multiple)
        return height, width


@dataclass
class _Args:
    """The __call__ arguments both pipelines share (see SanaVideoPipeline.__call__)."""

    prompt: Any
    negative_prompt: Any
    num_inference_steps: int
    timesteps: Any
    sigmas: Any
    guidance_scale: float
    num_videos_per_prompt: int
    height: int
    width: int
    frames: int
    eta: float
    generator: Any
    latents: Any
    prompt_embeds: Any
    prompt_attention_mask: Any
    negative_prompt_embeds: Any
    negative_prompt_attention_mask: Any
    output_type: str
    return_dict: bool
    clean_caption: bool
    use_resolution_binning: bool
    attention_kwargs: Any
    callback_on_step_end: Any
    callback_on_step_end_tensor_inputs: Any
    max_sequence_length: int
    complex_human_instruction: Any
    resize_to: tuple[int, int] | None = None
