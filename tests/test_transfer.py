"""Host-device copies that neither stall the stream nor hold up other threads (sana_video._transfer):
the same numbers as the plain operations. The pinned paths run where CUDA is (the device tool's runs);
on the CPU the fallbacks and the drawing they rely on are compared."""

from __future__ import annotations

import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor

from sana_video import _transfer

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_noise_is_diffusers_randn_tensor(device):
    shape = (1, 16, 3, 6, 10)
    got = [_transfer.randn(shape, torch.Generator().manual_seed(7), device) for _ in range(2)]
    expected = randn_tensor(shape, generator=torch.Generator().manual_seed(7), device=torch.device(device))
    assert got[0].device.type == device and got[0].dtype == torch.float32
    assert torch.equal(got[0].cpu(), expected.cpu()) and torch.equal(got[1].cpu(), expected.cpu())


def test_drawing_into_a_buffer_gives_the_same_numbers():
    """What the pinned path does (a draw into a preallocated host buffer), on an ordinary buffer."""
    shape = (2, 5, 7)
    buffer = torch.empty(shape)
    torch.randn(shape, generator=torch.Generator().manual_seed(3), out=buffer)
    assert torch.equal(buffer, randn_tensor(shape, generator=torch.Generator().manual_seed(3)))


def test_the_generator_moves_on_as_with_randn_tensor():
    ours, theirs = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for shape in ((3, 4), (5,)):
        _transfer.randn(shape, ours, "cpu")
        randn_tensor(shape, generator=theirs)
    assert torch.equal(ours.get_state(), theirs.get_state())


@pytest.mark.parametrize("device", DEVICES)
def test_to_host_copies_as_cpu_does(device):
    source = {
        "frames": (torch.rand(4, 6, 5, 3, device=device) * 255).to(torch.uint8).permute(0, 2, 1, 3),
        "state": torch.randn(2, 3, 3, device=device, dtype=torch.bfloat16),
        "none": None,
    }
    got = _transfer.to_host(source)
    assert got["none"] is None
    for name in ("frames", "state"):
        assert got[name].device.type == "cpu" and torch.equal(got[name], source[name].cpu())
        if device == "cpu":
            assert got[name] is source[name]  # as .cpu(): no copy
        else:
            assert got[name].is_pinned() and got[name].is_contiguous()
