"""The transformer's forward replayed from CUDA graphs: one launch a call instead of thousands.

A CUDA graph records the kernels of one call with their memory addresses; replaying it skips Python,
Dynamo's guards, the dispatcher and the launch queue. `CUDAGraphTransformer` wraps the model at the edge
(no change to its forward): it captures one graph per input signature, copies each call's inputs into
that graph's buffers, replays it and returns a copy of the output. The model's own input checks run on
every call, before the replay (the finiteness check waits for the GPU once a call, as without graphs).

What a graph bakes in, and so what the signature holds: the input shapes and dtypes, the text length
kept after the padding cut (done here, so the graph sees an additive bias and never reads the mask on
the host), the LoRA scale and the model's parameters and adapter scalings (a loaded, removed or
re-weighted adapter captures a new graph). Calls it cannot replay run the model directly: not on CUDA,
with autograd, with CPU offloading (the weights move during the call), or for a long video's chunk (with a
state or a frame offset: RoPE positions differ per chunk).

Graphs share one memory pool, which keeps the forward's activations allocated between calls (the
price of replaying): `release()` frees it.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from typing import Any

import torch

from sana_video.model.transformer import (
    SanaVideoTransformer3DModel,
    SanaVideoTransformerOutput,
    _drop_text_padding,
    _text_bias,
)

logger = logging.getLogger(__name__)


class CUDAGraphTransformer:
    """Call it as the model (same arguments and outputs); `model` stays usable on its own."""

    def __init__(self, model: SanaVideoTransformer3DModel, max_graphs: int = 4, warmup: int = 2):
        if max_graphs < 1 or warmup < 1:
            raise ValueError(f"max_graphs and warmup must be at least 1 (got {max_graphs}, {warmup})")
        self.model = model
        self.max_graphs = max_graphs
        self.warmup = warmup  # calls before a capture: compiles, autotunes and caches what needs the host
        self._graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self._pool = None
        self.captures = 0  # graphs captured so far (for tests and logs)

    def release(self) -> None:
        """Drop every graph and the memory they hold."""
        self._graphs.clear()
        self._pool = None

    def __call__(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_attention_mask: torch.Tensor | None = None,
        guidance: torch.Tensor | float | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
        **chunk_args,  # state, frame_offset, return_state: a long video's chunk, which runs the model
    ):
        model = self.model
        if (
            any(chunk_args.values())
            or not hidden_states.is_cuda
            or torch.is_grad_enabled()
            or hasattr(model, "_hf_hook")  # offloading (accelerate) moves the weights during the call
        ):
            return model(
                hidden_states,
                encoder_hidden_states,
                timestep,
                encoder_attention_mask,
                guidance,
                attention_kwargs=attention_kwargs,
                return_dict=return_dict,
                **chunk_args,
            )
        inputs = self.graph_inputs(
            hidden_states, encoder_hidden_states, timestep, encoder_attention_mask, guidance
        )
        # The graph for this signature (captured on first sight), fed and replayed.
        key = (
            tuple((k, tuple(v.shape), v.dtype, v.device) for k, v in inputs.items()),
            repr(attention_kwargs),
            _model_signature(model),
        )
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._capture(key, inputs, attention_kwargs)
        else:
            self._graphs.move_to_end(key)
            for name, value in inputs.items():
                graph.inputs[name].copy_(value)
        graph.graph.replay()
        sample = graph.output.clone()  # the next replay overwrites the graph's output
        if not return_dict:
            return (sample,)
        return SanaVideoTransformerOutput(sample=sample, state=None)

    def graph_inputs(self, hidden_states, encoder_hidden_states, timestep, encoder_attention_mask, guidance):
        """The tensors a graph reads, as the model would see them after its own preparation: checked
        (shapes, one finiteness sync), timestep and guidance one value per sample (or token), the text
        cut to its kept span and the mask as the additive bias [B, 1, L] the model makes of it."""
        model = self.model
        grid = model._check_inputs(hidden_states, encoder_hidden_states, encoder_attention_mask, None, 0)
        timestep, guidance = model._check_conditioning(hidden_states, timestep, guidance, grid)
        text, mask = _drop_text_padding(encoder_hidden_states, encoder_attention_mask)
        if mask is not None and mask.ndim == 2:
            mask = _text_bias(mask, model.dtype)[:, 0]  # [B, 1, L]
        inputs = {"x": hidden_states, "text": text, "t": timestep, "mask": mask, "guidance": guidance}
        return {k: v for k, v in inputs.items() if v is not None}

    def run(self, inputs: dict[str, torch.Tensor], attention_kwargs=None) -> torch.Tensor:
        """The model on `graph_inputs`' tensors (what a graph records)."""
        return self.model(
            inputs["x"],
            inputs["text"],
            inputs["t"],
            inputs.get("mask"),
            inputs.get("guidance"),
            attention_kwargs=attention_kwargs,
            return_dict=False,
        )[0]

    def _capture(self, key: tuple, inputs: dict[str, torch.Tensor], attention_kwargs) -> _Graph:
        model = self.model
        static = {name: value.clone() for name, value in inputs.items()}
        run = functools.partial(self.run, static, attention_kwargs)

        # Warm-up on a side stream (as PyTorch's graph recipe): compiles and lazily made tables happen
        # here, outside the capture, where waiting for the GPU is allowed.
        side = torch.cuda.Stream(device=static["x"].device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), model.unchecked_inputs():
            for _ in range(self.warmup):
                run()
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (a long video's decoder) may use the GPU during the capture.
        with (
            model.unchecked_inputs(),
            torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"),
        ):
            output = run()
        self.captures += 1
        logger.info("captured a CUDA graph of the transformer for %s", key[0])
        while len(self._graphs) >= self.max_graphs:
            self._graphs.popitem(last=False)
        self._graphs[key] = entry = _Graph(graph, static, output)
        return entry


class _Graph:
    __slots__ = ("graph", "inputs", "output")

    def __init__(self, graph, inputs: dict[str, torch.Tensor], output: torch.Tensor):
        self.graph, self.inputs, self.output = graph, inputs, output


def _model_signature(model: torch.nn.Module) -> tuple:
    """What a captured graph depends on besides its inputs: where the model's weights are (adapters added
    or removed, weights replaced or moved) and its adapters' scalings (Python numbers the graph recorded).
    Weights changed in place need no new graph: the graph reads them where they are."""
    params = tuple(p.data_ptr() for p in model.parameters())
    scalings = tuple(
        (name, tuple(sorted(module.scaling.items())))
        for name, module in model.named_modules()
        if isinstance(getattr(module, "scaling", None), dict)
    )
    return params, scalings
