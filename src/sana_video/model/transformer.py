"""SanaVideoTransformer3DModel: the SANA-Video diffusion transformer, weight-compatible with the official
diffusers-format checkpoints, with block-causal state passing for long video."""

from __future__ import annotations

import contextlib
import logging
import math
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput, apply_lora_scale
from torch import nn

from sana_video.model.attention import QK_NORMS
from sana_video.model.block import SanaVideoBlock
from sana_video.model.embeddings import AdaLNConditioning, CaptionProjection, Rope3D
from sana_video.model.layers import PointwiseConv, RMSNorm, layer_norm, modulate
from sana_video.model.mixffn import TemporalConv
from sana_video.model.presets import preset
from sana_video.model.state import LayerState, SanaVideoState

logger = logging.getLogger(__name__)

TEXT_MASK_BIAS = -10000.0  # added to padded text keys (the reference's value, not -inf)


@dataclass
class SanaVideoTransformerOutput(BaseOutput):
    sample: torch.Tensor  # [B, C_out, F, H, W] predicted velocity, in the model dtype
    state: SanaVideoState | None = None  # the context for the next chunk, when return_state=True


class SanaVideoTransformer3DModel(ModelMixin, ConfigMixin, PeftAdapterMixin):
    """The SANA-Video transformer (linear self-attention DiT with Mix-FFN).

    The config fields and state-dict keys are those of the official `transformer/` folders, so
    ``SanaVideoTransformer3DModel.from_pretrained(path, subfolder="transformer")`` loads them unchanged.
    Defaults give the 2B-480p model (note `mlp_ratio=3.0`; diffusers' constructor default is 2.5).
    """

    _supports_gradient_checkpointing = True
    _no_split_modules: ClassVar[list[str]] = ["SanaVideoBlock"]
    _skip_layerwise_casting_patterns: ClassVar[list[str]] = ["patch_embedding", "norm"]
    # `compile_repeated_blocks()` (diffusers' regional compilation) compiles each block: one graph,
    # reused by all of them, with or without a state (no graph breaks).
    _repeated_blocks: ClassVar[list[str]] = ["SanaVideoBlock"]

    @register_to_config
    def __init__(
        self,
        in_channels: int = 16,
        out_channels: int | None = 16,
        num_attention_heads: int = 20,
        attention_head_dim: int = 112,
        num_layers: int = 20,
        num_cross_attention_heads: int | None = 20,
        cross_attention_head_dim: int | None = 112,
        cross_attention_dim: int | None = 2240,
        caption_channels: int = 2304,
        mlp_ratio: float = 3.0,
        dropout: float = 0.0,
        attention_bias: bool = False,
        sample_size: int = 30,  # latent size that picks the pipelines' resolution bins; unused here
        patch_size: tuple[int, int, int] = (1, 2, 2),
        norm_elementwise_affine: bool = False,  # affects the FFN pre-norm only, as in the checkpoints
        norm_eps: float = 1e-6,
        interpolation_scale: int | None = None,  # unused (kept for config compatibility)
        guidance_embeds: bool = False,
        guidance_embeds_scale: float = 0.1,  # unused (kept for config compatibility)
        qk_norm: str | None = "rms_norm_across_heads",
        rope_max_seq_len: int = 1024,
    ):
        super().__init__()
        dim = num_attention_heads * attention_head_dim
        out_channels = out_channels or in_channels
        _check_config(
            dim, patch_size, qk_norm, cross_attention_dim, num_cross_attention_heads, cross_attention_head_dim
        )
        patch_size = tuple(patch_size)

        self.rope = Rope3D(attention_head_dim, rope_max_seq_len)
        self.patch_embedding = nn.Conv3d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.time_embed = AdaLNConditioning(dim, guidance_embeds)
        self.caption_projection = CaptionProjection(caption_channels, dim)
        self.caption_norm = RMSNorm(dim, eps=1e-5)
        self.transformer_blocks = nn.ModuleList(
            SanaVideoBlock(
                dim,
                num_attention_heads,
                attention_head_dim,
                num_cross_attention_heads,
                cross_attention_head_dim,
                cross_attention_dim,
                mlp_ratio,
                attention_bias,
                qk_norm,
                norm_eps,
                norm_elementwise_affine,
                dropout,
            )
            for _ in range(num_layers)
        )
        self.scale_shift_table = nn.Parameter(torch.empty(2, dim))  # final layer: shift, scale
        self.proj_out = nn.Linear(dim, math.prod(patch_size) * out_channels)
        self.gradient_checkpointing = False
        self._init_weights()

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> SanaVideoTransformer3DModel:
        """A randomly initialised model of a named configuration (`tiny`, `2b-480p`, `2b-720p`)."""
        return cls(**preset(name, **overrides))

    def _init_weights(self) -> None:
        """Every weight-init decision, in one place. Linear/conv layers: PyTorch's default
        (Kaiming-uniform weights, uniform biases); adaLN tables: N(0, 1/D), as the reference."""
        for module in self.modules():
            if isinstance(module, (PointwiseConv, TemporalConv)):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))
                bias = getattr(module, "bias", None)
                if bias is not None:
                    bound = 1 / math.sqrt(module.weight[0].numel())
                    nn.init.uniform_(bias, -bound, bound)
            elif isinstance(module, SanaVideoBlock):
                nn.init.normal_(module.scale_shift_table, std=module.scale_shift_table.shape[-1] ** -0.5)
        nn.init.normal_(self.scale_shift_table, std=self.scale_shift_table.shape[-1] ** -0.5)

    @contextlib.contextmanager
    def unchecked_inputs(self) -> Iterator[None]:
        """Within it, calls skip the check that hidden_states, timestep and guidance are finite, which
        waits for the GPU once a call. For a caller's loop that checks its own tensors: the long-video
        pipeline checks each chunk's latents once, on its decode thread."""
        before = self._check_finite
        self._check_finite = False
        try:
            yield
        finally:
            self._check_finite = before

    _check_finite = True

    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_attention_mask: torch.Tensor | None = None,
        guidance: torch.Tensor | float | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        state: SanaVideoState | None = None,
        frame_offset: int = 0,
        return_state: bool = False,
        return_dict: bool = True,
    ) -> SanaVideoTransformerOutput | tuple:
        """Predict the flow velocity for latent video `hidden_states`.

        Args:
            hidden_states: [B, C_in, F, H, W] latents (a whole clip, or one chunk of a long video).
            encoder_hidden_states: [B, L, caption_channels] text-encoder features.
            timestep: one value per sample ([B] or a scalar), or one per token (B·N values in (f, h, w)
                token order after patchify, any shape).
            encoder_attention_mask: [B, L] with 1 = keep, 0 = padding; or a [B, 1, L] additive bias.
            guidance: [B] guidance values; required exactly when the config has `guidance_embeds`.
            attention_kwargs: {"scale": s} scales loaded LoRA adapters.
            state: the context of earlier chunks (from a call with `return_state=True`). Self-attention
                then covers this chunk and all earlier ones; the temporal conv of the first frame sees
                the previous chunk's last frame.
            frame_offset: this chunk's absolute first latent frame, for RoPE (`state.num_frames`
                for the chunk that follows `state`).
            return_state: also return the context for the next chunk: `state` plus this chunk.
        """
        batch = hidden_states.shape[0]
        grid = self._check_inputs(
            hidden_states, encoder_hidden_states, encoder_attention_mask, state, frame_offset
        )
        timestep, guidance = self._check_conditioning(hidden_states, timestep, guidance, grid)
        dtype = self.patch_embedding.weight.dtype

        rope = self.rope(grid, frame_offset // self.config.patch_size[0], hidden_states.device)  # [N, d/2] ×2
        x = self.patch_embedding(hidden_states.to(dtype)).flatten(2).transpose(1, 2)  # [B, N, D]
        mod, emb = self.time_embed(timestep, guidance, batch, dtype)  # [B, T, 6D], [B, T, D]; T = 1 or N
        encoder_hidden_states, encoder_attention_mask = _drop_text_padding(
            encoder_hidden_states, encoder_attention_mask
        )
        text = self.caption_norm(self.caption_projection(encoder_hidden_states.to(dtype)))  # [B, L, D]
        text_bias = _text_bias(encoder_attention_mask, dtype)  # [B, 1, 1, L]
        x, layers = self._run_blocks(x, text, text_bias, mod, grid, rope, state, return_state)
        shift, scale = (self.scale_shift_table + emb.unsqueeze(-2)).unbind(-2)  # [B, T, D] each
        x = self.proj_out(modulate(layer_norm(x, eps=1e-6), shift, scale))  # [B, N, p·C_out]
        sample = self._unpatchify(x, grid)  # [B, C_out, F, H, W]

        next_state = SanaVideoState(layers, frame_offset + hidden_states.shape[2]) if return_state else None
        if not return_dict:
            return (sample, next_state) if return_state else (sample,)
        return SanaVideoTransformerOutput(sample=sample, state=next_state)

    def _run_blocks(self, x, text, text_bias, mod, grid, rope, state, return_state):
        checkpointed = torch.is_grad_enabled() and self.gradient_checkpointing
        layer_states = state.layers if state is not None else [None] * len(self.transformer_blocks)
        new_states: list[LayerState] = []
        for block, layer_state in zip(self.transformer_blocks, layer_states):
            args = (x, text, text_bias, mod, grid, rope, layer_state, return_state)
            x, new = self._gradient_checkpointing_func(block, *args) if checkpointed else block(*args)
            new_states.append(new)
        return x, new_states

    def _unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        # proj_out's channels are laid out (p_t, p_h, p_w, C) with C fastest.
        (frames, rows, cols), (pt, ph, pw) = grid, self.config.patch_size
        x = x.view(x.shape[0], frames, rows, cols, pt, ph, pw, -1)
        return x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(x.shape[0], -1, frames * pt, rows * ph, cols * pw)

    # Input checks. Errors name the bad value and the rule (STYLE habit 14).

    def _check_inputs(self, x, text, mask, state, frame_offset) -> tuple[int, int, int]:
        cfg = self.config
        if x.ndim != 5:
            raise ValueError(f"hidden_states must be [B, C, F, H, W]; got shape {tuple(x.shape)}")
        batch, channels, frames, height, width = x.shape
        if channels != cfg.in_channels:
            raise ValueError(
                f"hidden_states has {channels} channels; this model takes in_channels={cfg.in_channels}"
            )
        for name, size, patch in zip(("frames", "height", "width"), (frames, height, width), cfg.patch_size):
            if size == 0 or size % patch:
                raise ValueError(
                    f"latent {name} must be a positive multiple of the patch size {patch} (got {size})"
                )
        if text.ndim != 3 or text.shape[0] != batch or text.shape[2] != cfg.caption_channels:
            raise ValueError(
                f"encoder_hidden_states must be [B={batch}, L, caption_channels={cfg.caption_channels}]; "
                f"got shape {tuple(text.shape)}"
            )
        if mask is not None:
            length = text.shape[1]
            if tuple(mask.shape) not in ((batch, length), (batch, 1, length)):
                raise ValueError(
                    f"encoder_attention_mask must be [B, L] = {(batch, length)} (or a [B, 1, L] bias) to match "
                    f"encoder_hidden_states; got shape {tuple(mask.shape)}"
                )
        if frame_offset < 0 or frame_offset % cfg.patch_size[0]:
            raise ValueError(
                f"frame_offset must be a non-negative multiple of the temporal patch size {cfg.patch_size[0]} "
                f"(got {frame_offset})"
            )
        grid = (frames // cfg.patch_size[0], height // cfg.patch_size[1], width // cfg.patch_size[2])
        if state is not None:
            self._check_state(state, batch, grid, frame_offset)
        return grid

    def _check_state(
        self, state: SanaVideoState, batch: int, grid: tuple[int, int, int], frame_offset: int
    ) -> None:
        if frame_offset < state.num_frames:
            raise ValueError(
                f"frame_offset {frame_offset} overlaps the state, which covers latent frames "
                f"0..{state.num_frames - 1}: a chunk that reads it starts at frame_offset={state.num_frames} or later"
            )
        if len(state.layers) != len(self.transformer_blocks):
            raise ValueError(
                f"state has {len(state.layers)} layers; this model has {len(self.transformer_blocks)}"
            )
        want = (batch, grid[1] * grid[2], self.inner_dim)
        got = tuple(state.layers[0].last_frame.shape)
        if got != want:
            raise ValueError(
                f"state was made for [batch, H'·W', D] = {got} but this input needs {want}: "
                "chunks of one video must share batch size and resolution"
            )

    def _check_conditioning(self, x, timestep, guidance, grid) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, tokens = x.shape[0], math.prod(grid)
        timestep = torch.as_tensor(timestep, device=x.device).flatten()
        if timestep.numel() == 1:
            timestep = timestep.expand(batch)
        if timestep.numel() not in (batch, batch * tokens):
            raise ValueError(
                f"timestep must have one value per sample ({batch}) or per token (B·N = {batch * tokens}); "
                f"got {timestep.numel()} values"
            )
        if self.config.guidance_embeds != (guidance is not None):
            raise ValueError(
                "guidance must be given exactly when the model has a guidance embedding "
                f"(guidance_embeds={self.config.guidance_embeds}, guidance={'None' if guidance is None else 'given'})"
            )
        if guidance is not None:
            guidance = torch.as_tensor(guidance, device=x.device).flatten()
            guidance = guidance.expand(batch) if guidance.numel() == 1 else guidance
            if guidance.numel() != batch:
                raise ValueError(f"guidance must have one value per sample ({batch}); got {guidance.numel()}")
        if self._check_finite and not _is_tracing():
            # One synchronisation for all the cheap finiteness checks.
            checks = [torch.isfinite(t).all() for t in (x, timestep, guidance) if t is not None]
            if not bool(torch.stack(checks).all()):
                bad = [
                    n
                    for n, t in (("hidden_states", x), ("timestep", timestep), ("guidance", guidance))
                    if t is not None and not bool(torch.isfinite(t).all())
                ]
                raise ValueError(f"{', '.join(bad)} contain NaN or infinite values")
        return timestep, guidance

    @property
    def inner_dim(self) -> int:
        return self.config.num_attention_heads * self.config.attention_head_dim

    @classmethod
    def from_pretrained(cls, *args, **kwargs) -> SanaVideoTransformer3DModel:
        """diffusers' loading, made strict: a missing, unexpected or mis-shaped weight is an error,
        never a silently random-initialised layer. (No key is allow-listed: the official folders hold
        exactly this model's state dict.)"""
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        problems = {kind: keys for kind, keys in info.items() if kind.endswith("_keys") and keys}
        if problems:
            details = "; ".join(f"{kind}: {sorted(map(str, keys))[:8]}" for kind, keys in problems.items())
            raise ValueError(f"checkpoint does not match {cls.__name__}: {details}")
        return (model, info) if want_info else model


def _check_config(dim, patch_size, qk_norm, cross_attention_dim, cross_heads, cross_head_dim) -> None:
    if qk_norm not in QK_NORMS:
        raise ValueError(f"qk_norm must be one of {QK_NORMS} (got {qk_norm!r})")
    if len(tuple(patch_size)) != 3 or min(patch_size) < 1:
        raise ValueError(f"patch_size must be three positive ints (t, h, w); got {patch_size}")
    if cross_attention_dim != dim:
        raise ValueError(
            f"cross_attention_dim must equal num_attention_heads·attention_head_dim = {dim}, because the "
            f"captions are projected to the model width (got {cross_attention_dim})"
        )
    if not cross_heads or not cross_head_dim:
        raise ValueError(
            f"num_cross_attention_heads and cross_attention_head_dim are required (got {cross_heads}, {cross_head_dim})"
        )


TEXT_BUCKET = 128  # text lengths kept after dropping padding: multiples of this (few compiled shapes)


def _drop_text_padding(
    text: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Cut the text positions that are padding in every sample, keeping a multiple of TEXT_BUCKET.

    Exact: a padded key's bias (−10000) makes its softmax weight exp(−10000 − ...) = 0 in fp32, so it
    adds nothing. Cross-attention's cost is linear in the keys: prompts padded to 300 tokens with ~100
    real ones attend over 128 (0.77 → 0.36 ms a block on an H200, benchmarks/probe_hopper.py). Skipped
    when a sample is all padding (its softmax is then uniform over every key), for an additive-bias
    mask, and while tracing (one host sync per call reads the mask).
    """
    if mask is None or mask.ndim != 2 or _is_tracing():
        return text, mask
    span = _kept_span(mask)
    if span is None:
        return text, mask
    start, end = span
    return text[:, start:end], mask[:, start:end]


# The spans of the last few masks seen, so that a mask reused call after call (a pipeline's, every step)
# is read once: reading it waits for the GPU. An entry holds its mask weakly and its version counter,
# so a mask that died or was written since is read again.
_SPANS: list[tuple[weakref.ref, int, tuple[int, int] | None]] = []


def _kept_span(mask: torch.Tensor) -> tuple[int, int] | None:
    """[start, end) of the text positions to keep, or None to keep them all."""
    version = None if mask.is_inference() else mask._version  # inference tensors keep no version
    for ref, seen, span in _SPANS:
        if ref() is mask and version is not None and version == seen:
            return span
    keep = mask.bool()
    flags = torch.cat([keep.any(0), keep.any(1).all()[None]]).tolist()  # one sync
    columns, every_row = flags[:-1], flags[-1]
    length = len(columns)
    span = None
    if every_row:
        first = columns.index(True)
        last = length - columns[::-1].index(True)
        kept = min(length, -(-(last - first) // TEXT_BUCKET) * TEXT_BUCKET)
        end = min(length, first + kept)
        span = (end - kept, end)
    if version is not None:
        _SPANS.insert(0, (weakref.ref(mask), version, span))
        del _SPANS[4:]
    return span


def _text_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """[B, L] keep-mask (or [B, 1, L] bias) -> additive bias [B, 1, 1, L] for every head and query."""
    if mask is None:
        return None
    bias = (1 - mask.to(dtype)) * TEXT_MASK_BIAS if mask.ndim == 2 else mask.to(dtype).squeeze(1)
    return bias[:, None, None, :]


def _is_tracing() -> bool:
    capturing = torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()
    return torch.compiler.is_compiling() or capturing
