"""The one place that chooses how an op runs (STYLE habit 8).

Model code calls ops such as ``linear_attention(...)``; it never checks for Triton or CUDA itself.
Each op registers its implementations here with an availability test; the first available one in
priority order runs, and the choice is logged once per (op, device, dtype).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    name: str
    fn: Callable
    available: Callable[[torch.Tensor], bool]
    priority: int  # higher wins; a negative priority is never chosen automatically


_backends: dict[str, list[Backend]] = {}
_forced: dict[str, str] = {}
_logged: set[tuple[str, str, str, str]] = set()


def register(op: str, name: str, fn: Callable, *, priority: int, available=lambda x: True) -> None:
    entries = [b for b in _backends.get(op, []) if b.name != name]
    entries.append(Backend(name, fn, available, priority))
    _backends[op] = sorted(entries, key=lambda b: -b.priority)


def backends(op: str) -> list[str]:
    return [b.name for b in _backends[op]]


def resolve(op: str, x: torch.Tensor) -> Callable:
    """The implementation of `op` for inputs like `x` (device and dtype decide)."""
    if op in _forced:
        backend = next(b for b in _backends[op] if b.name == _forced[op])
    else:
        backend = next((b for b in _backends[op] if b.priority >= 0 and b.available(x)), None)
        if backend is None:
            raise RuntimeError(f"no implementation of {op} for {x.device.type} / {x.dtype}")
    key = (op, x.device.type, str(x.dtype), backend.name)
    # Under torch.compile the choice is made while tracing; logging there would break the graph.
    if key not in _logged and not torch.compiler.is_compiling():
        _logged.add(key)
        logger.info("%s on %s/%s: using the %s implementation", op, x.device.type, x.dtype, backend.name)
    return backend.fn


@contextlib.contextmanager
def use_backend(op: str, name: str) -> Iterator[None]:
    """Force one implementation of `op` inside the block (tests, debugging, benchmarks)."""
    if name not in backends(op):
        raise ValueError(f"{op} has no backend {name!r}; choose one of {backends(op)}")
    previous = _forced.get(op)
    _forced[op] = name
    try:
        yield
    finally:
        if previous is None:
            _forced.pop(op, None)
        else:
            _forced[op] = previous
