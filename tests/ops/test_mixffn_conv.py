"""The fused SiLU → depthwise 3×3 conv → GLU kernel against the fp32 reference and `MixFFN`'s own code.

On a machine without a GPU the kernel runs in Triton's interpreter: tests/conftest.py sets
TRITON_INTERPRET=1 there before anything imports triton (kernels choose compile or interpret when they
are defined). The interpreter runs programs one by one, so shapes stay small: odd frames (5 × 7) that
leave partial column and channel blocks, and explicit small tiles where several blocks must meet.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sana_video.model.mixffn import MixFFN
from sana_video.ops import dispatch, mixffn_conv, use_backend
from sana_video.ops.mixffn_conv import eager, naive, silu_dwconv_glu
from tests.conftest import rel_err

triton_kernel = pytest.importorskip("sana_video.ops.mixffn_conv.triton_kernel", exc_type=ImportError)
if not (triton_kernel.INTERPRET or torch.cuda.is_available()):
    pytest.skip("triton was imported without TRITON_INTERPRET=1 and there is no GPU", allow_module_level=True)

DEVICE = "cpu" if triton_kernel.INTERPRET else "cuda"
# bf16: the model rounds after SiLU, the conv and the gate, the kernel once at the end (and the
# interpreter truncates where a GPU rounds to nearest); both are within bf16 noise of fp32.
TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2}
GRID = (3, 5, 7)  # frames, rows, cols
DIM = 8  # the Mix-FFN's model width; only conv_inverted's input sees it


@pytest.fixture(autouse=True)
def _poison_outputs(monkeypatch):
    """Outputs start as NaN, so any element the kernel fails to write fails the finiteness checks."""
    monkeypatch.setattr(triton_kernel, "POISON_OUTPUTS", True)


def _randn(*shape, seed=0, std=1.0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (std * torch.randn(*shape, generator=gen)).to(DEVICE, dtype)


def _mixffn(hidden: int, bias: bool, dtype: torch.dtype, seed: int = 0) -> MixFFN:
    """A MixFFN with 2h = 2·hidden channels and random weights (its parameters start uninitialized)."""
    module = MixFFN(DIM, hidden / DIM)
    assert module.conv_depth.in_channels == 2 * hidden
    gen = torch.Generator().manual_seed(seed)
    stds = {"conv_inverted.weight": 2.0 / DIM**0.5, "conv_depth.weight": 0.4}
    with torch.no_grad():
        for name, param in module.named_parameters():
            param.copy_(stds.get(name, 0.3) * torch.randn(param.shape, generator=gen))
    if not bias:
        module.conv_depth.bias = None  # nn.Conv2d then convolves without one
    return module.to(DEVICE, dtype).eval()


def _model_gate(module: MixFFN, z: torch.Tensor, grid) -> torch.Tensor:
    """What MixFFN.forward runs between its 1×1 convs where no kernel is chosen (`eager`: the model's
    PyTorch code; on the CPU and in fp32 that is always)."""
    return eager.silu_dwconv_glu(z, module.conv_depth.weight, module.conv_depth.bias, grid)


def _z(module: MixFFN, batch: int, grid, dtype=torch.float32, seed: int = 1) -> torch.Tensor:
    frames, rows, cols = grid
    x = _randn(batch, frames * rows * cols, DIM, seed=seed, dtype=dtype)
    return module.conv_inverted(x)


def _triton(z, weight, bias, grid):
    with use_backend("silu_dwconv_glu", "triton"):
        return silu_dwconv_glu(z, weight, bias, grid)


def _check(out, expected, dtype):
    assert out.dtype == expected.dtype and out.shape == expected.shape
    assert torch.isfinite(out).all(), "kernel left output elements unwritten"
    assert rel_err(out, expected) <= TOL[dtype], rel_err(out, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("hidden", [24, 40])
@torch.no_grad()
def test_matches_naive_and_model(hidden, bias, dtype):
    # 7 columns in one block of 8; h = 24 and 40 fill part of one channel block (32 and 64).
    module = _mixffn(hidden, bias, dtype)
    z = _z(module, 2, GRID, dtype)
    weight, conv_bias = module.conv_depth.weight, module.conv_depth.bias
    out = _triton(z, weight, conv_bias, GRID)
    assert out.shape == (2, 105, hidden)
    reference = naive.silu_dwconv_glu(z, weight, conv_bias, GRID)
    model = _model_gate(module, z, GRID)
    _check(out, reference, dtype)
    _check(out, model, dtype)
    if dtype == torch.float32:
        # The reference against the model: independently written, same math.
        assert rel_err(reference, model) <= 1e-6


@pytest.mark.parametrize(
    "block_c, block_h, strip_rows",
    [
        (4, 16, 2),  # 2 column blocks (4 + 3), 3 channel blocks (16 + 16 + 8), strips of 2 + 2 + 1 rows
        (2, 32, 3),  # 4 column blocks, the last of one column; 2 channel blocks (32 + 8); strips 3 + 2
    ],
)
@torch.no_grad()
def test_blocks_meet_without_gaps_or_overlap(block_c, block_h, strip_rows):
    """Small tiles: halo rows and columns come from neighbouring blocks' territory, and the gate half
    of a partial channel block must still be read at c + h. Each next row's loads are issued a row
    early: a strip's first and last halo rows must still be the right ones."""
    grid = (2, 5, 7)
    module = _mixffn(40, True, torch.float32)
    z = _z(module, 1, grid)
    weight, bias = module.conv_depth.weight, module.conv_depth.bias
    out = triton_kernel.silu_dwconv_glu(
        z, weight, bias, grid, block_c=block_c, block_h=block_h, strip_rows=strip_rows
    )
    _check(out, naive.silu_dwconv_glu(z, weight, bias, grid), torch.float32)
    _check(out, _model_gate(module, z, grid), torch.float32)


@pytest.mark.parametrize(
    "batch, grid",
    [
        (1, (1, 5, 7)),  # a single frame (an image)
        (2, (3, 1, 1)),  # 1 × 1 frames: only the centre tap and the bias remain
        (2, (2, 1, 6)),  # one row: the rows above and below are all padding
        (1, (2, 4, 1)),  # one column: the columns left and right are all padding
    ],
)
@torch.no_grad()
def test_degenerate_frames(batch, grid):
    module = _mixffn(24, True, torch.float32)
    z = _z(module, batch, grid)
    weight, bias = module.conv_depth.weight, module.conv_depth.bias
    out = _triton(z, weight, bias, grid)
    _check(out, naive.silu_dwconv_glu(z, weight, bias, grid), torch.float32)
    _check(out, _model_gate(module, z, grid), torch.float32)
    if grid[1:] == (1, 1):
        y = F.silu(z) * weight[:, 0, 1, 1] + bias
        u, gate = y.chunk(2, dim=-1)
        _check(out, u * F.silu(gate), torch.float32)


@torch.no_grad()
def test_strided_inputs():
    """z as a view with a token stride of 2h + 6 and an offset (e.g. a slice of a wider projection) is
    read in place; a z whose channels are not unit-stride is copied first."""
    grid, hidden = (2, 3, 5), 24
    weight, bias = _randn(2 * hidden, 1, 3, 3, seed=2, std=0.4), _randn(2 * hidden, seed=3, std=0.3)
    wide = _randn(2, 30, 2 * hidden + 6, std=2.0)
    z = wide[..., 3 : 3 + 2 * hidden]
    assert z.stride(1) == 2 * hidden + 6
    _check(_triton(z, weight, bias, grid), naive.silu_dwconv_glu(z, weight, bias, grid), torch.float32)
    z = _randn(2, 2 * hidden, 30, std=2.0).transpose(1, 2)
    assert z.stride(-1) != 1
    _check(_triton(z, weight, bias, grid), naive.silu_dwconv_glu(z, weight, bias, grid), torch.float32)


def test_empty_inputs():
    weight = _randn(16, 1, 3, 3)
    for batch, grid in [(0, (2, 3, 4)), (2, (0, 3, 4))]:
        z = _randn(batch, grid[0] * 12, 16)
        out = _triton(z, weight, None, grid)
        assert out.shape == (batch, grid[0] * 12, 8) and out.dtype == z.dtype


def test_shape_errors():
    z, weight, bias = _randn(2, 12, 16), _randn(16, 1, 3, 3), _randn(16)
    silu_dwconv_glu(z, weight, bias, (1, 3, 4))  # valid: the checks pass
    with pytest.raises(ValueError, match="even"):
        silu_dwconv_glu(z[..., :15], weight[:15], bias[:15], (1, 3, 4))
    with pytest.raises(ValueError, match=r"\[B, N, 2h\]"):
        silu_dwconv_glu(z[0], weight, bias, (1, 3, 4))
    with pytest.raises(ValueError, match="holds 15 tokens but z has N = 12"):
        silu_dwconv_glu(z, weight, bias, (1, 3, 5))
    with pytest.raises(ValueError, match=r"\(frames, rows, cols\)"):
        silu_dwconv_glu(z, weight, bias, (3, 4))
    with pytest.raises(ValueError, match=r"\[2h, 1, 3, 3\]"):
        silu_dwconv_glu(z, weight[:8], bias, (1, 3, 4))
    with pytest.raises(ValueError, match=r"\[2h\]"):
        silu_dwconv_glu(z, weight, bias[:8], (1, 3, 4))
    with pytest.raises(ValueError, match="meta"):
        silu_dwconv_glu(z, weight.to("meta"), bias, (1, 3, 4))


def test_refuses_inputs_that_need_gradients():
    z = _randn(1, 12, 16).requires_grad_()
    with pytest.raises(RuntimeError, match="forward only"):
        _triton(z, _randn(16, 1, 3, 3), None, (1, 3, 4))


def test_backend_choice(monkeypatch):
    """The default for half-precision CUDA tensors that need no gradient; CPU tensors, fp32 and training
    stay on eager (the model's own code); forced, the kernel runs; without triton nothing offers it."""
    cpu = torch.zeros(2, 12, 16, dtype=torch.bfloat16)
    cuda = torch.zeros(2, 12, 16, device="meta", dtype=torch.bfloat16)
    monkeypatch.setattr(type(cuda), "is_cuda", property(lambda t: t.device.type in ("cuda", "meta")))
    assert dispatch.resolve("silu_dwconv_glu", cpu) is eager.silu_dwconv_glu
    assert dispatch.resolve("silu_dwconv_glu", cuda) is triton_kernel.silu_dwconv_glu_op
    assert dispatch.resolve("silu_dwconv_glu", cuda.float()) is eager.silu_dwconv_glu
    assert dispatch.resolve("silu_dwconv_glu", cuda.clone().requires_grad_()) is eager.silu_dwconv_glu
    with use_backend("silu_dwconv_glu", "triton"):
        assert dispatch.resolve("silu_dwconv_glu", cpu) is triton_kernel.silu_dwconv_glu_op
    assert mixffn_conv.triton_available(cuda) and not mixffn_conv.triton_available(cpu)
    monkeypatch.setattr(mixffn_conv, "triton_kernel", None)  # as without triton installed
    assert not mixffn_conv.triton_available(torch.zeros(2, 12, 16, device="meta"))


def test_strip_heuristic(monkeypatch):
    """On a GPU a frame is one strip unless the other grid axes leave the SMs short of programs."""
    monkeypatch.setattr(triton_kernel, "INTERPRET", False)
    monkeypatch.setattr(triton_kernel, "_multiprocessors", lambda device: 132)
    cuda = torch.device("cuda", 0)
    # The 2B model at 480p: CFG batch 2 × 21 frames × 4 column blocks (104 columns) × 88 channel blocks.
    assert triton_kernel._strip_rows(2 * 21 * 4 * 88, 60, cuda) == 60
    # One 60 × 104 image with 8 channel blocks: 32 programs want ~17 strips, of at least 4 rows.
    assert triton_kernel._strip_rows(32, 60, cuda) == 4
    assert triton_kernel._strip_rows(32, 3, cuda) == 3  # too few rows to split
    assert triton_kernel._strip_rows(32, 60, torch.device("cpu")) == 60


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@torch.no_grad()
def test_mixffn_runs_the_kernel_when_it_is_chosen(dtype):
    """The whole MixFFN (1×1 convs and temporal conv around the op) with the kernel forced, against the
    module on its default path."""
    module = _mixffn(24, True, dtype)
    x = _randn(2, 105, DIM, seed=3, dtype=dtype)
    expected, last = module(x, GRID, None, True)
    with use_backend("silu_dwconv_glu", "triton"):
        out, last_fused = module(x, GRID, None, True)
    _check(out, expected, dtype)
    _check(last_fused, last, dtype)


def test_dispatch_runs_one_opaque_op_that_compiles():
    """What dispatch runs is one custom op (Inductor calls it rather than tracing the kernel): the same
    bits as the kernel called directly, eager and under torch.compile(fullgraph=True), and it passes
    torch.library's checks (fake shapes, schema)."""
    module = _mixffn(24, True, torch.float32)
    with torch.no_grad():
        z = _z(module, 2, GRID)
    weight, bias = module.conv_depth.weight.detach(), module.conv_depth.bias.detach()
    direct = triton_kernel.silu_dwconv_glu(z, weight, bias, GRID)
    compiled = torch.compile(triton_kernel.silu_dwconv_glu_op, fullgraph=True, backend="aot_eager")
    for got in (triton_kernel.silu_dwconv_glu_op(z, weight, bias, GRID), compiled(z, weight, bias, GRID)):
        assert torch.equal(got, direct)
    torch.library.opcheck(
        triton_kernel._silu_dwconv_glu_op,
        (z, weight, bias, *GRID),
        test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"),
    )
