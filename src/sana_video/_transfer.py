"""Copies between the host and a CUDA device that hold up neither the GPU nor other threads.

Two CUDA behaviours make plain copies costly in the long-video loop, where one thread launches the
transformer while another decodes and copies frames out (measured in a trace on an H200, 2026-11-28):

- A copy to or from pageable host memory is staged by the driver inside the call; meanwhile other
  threads' kernel launches wait. The decode thread's `.cpu()` of a chunk's frames (48 MB) held the main
  thread's next launch for ~200 ms a chunk, and the GPU went idle for the ~80 ms the copy itself took.
- A copy from pageable memory to the device first waits for the stream to drain: noise drawn on a CPU
  generator and moved with `.to("cuda")` stalled the main thread at every re-noising step.

Pinned (page-locked) host buffers avoid both: the DMA runs asynchronously on the stream, and only the
thread that needs the result waits (on an event). Off CUDA these are the plain operations.
"""

from __future__ import annotations

import torch


def randn(shape, generator: torch.Generator | None, device, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise of `shape` on `device`, drawn from `generator` on the generator's device:
    the numbers of diffusers' `randn_tensor(shape, generator=generator, device=device, dtype=dtype)`.
    From a CPU generator to a CUDA device, drawn into pinned memory and copied without a stream sync."""
    device = torch.device(device)
    one_cpu_generator = isinstance(generator, torch.Generator) and generator.device.type == "cpu"
    if not one_cpu_generator or device.type != "cuda":
        from diffusers.utils.torch_utils import randn_tensor

        return randn_tensor(tuple(shape), generator=generator, device=device, dtype=dtype)
    host = torch.empty(tuple(shape), dtype=dtype, pin_memory=True)
    torch.randn(tuple(shape), generator=generator, dtype=dtype, out=host)
    # The pinned block goes back to torch's host cache when `host` dies, reused only after this copy.
    return host.to(device, non_blocking=True)


def to_host(tensors: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor | None]:
    """CPU copies of the CUDA tensors among `tensors` (contiguous; others are returned as they are),
    as `.cpu()` gives, made on the current stream into pinned memory; the calling thread alone waits."""
    out: dict[str, torch.Tensor | None] = {}
    pending = False
    for name, tensor in tensors.items():
        if tensor is None or tensor.device.type != "cuda":
            out[name] = tensor
            continue
        host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        out[name], pending = host, True
    if pending:
        done = torch.cuda.Event()
        done.record()
        done.synchronize()
    return out
