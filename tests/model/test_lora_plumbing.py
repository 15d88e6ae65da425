"""diffusers' PEFT plumbing (PeftAdapterMixin) works on our transformer's attention projections."""

from __future__ import annotations

import torch
from peft import LoraConfig

from sana_video import SanaVideoTransformer3DModel
from tests.conftest import make_inputs, randomize, rel_err, tiny_config

CFG = tiny_config()


def test_lora_adapter_applies_and_scales():
    torch.manual_seed(0)
    model = randomize(SanaVideoTransformer3DModel(**CFG))
    inputs = make_inputs(CFG, batch=1, frames=2, height=4, width=4)
    with torch.no_grad():
        base = model(**inputs).sample
        model.add_adapter(
            LoraConfig(
                r=4,
                lora_alpha=4,
                target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                init_lora_weights=False,
            )
        )
        with_lora = model(**inputs).sample
        scaled_off = model(**inputs, attention_kwargs={"scale": 0.0}).sample
        again = model(**inputs).sample
    assert rel_err(with_lora, base) > 1e-3  # the adapter is live
    torch.testing.assert_close(scaled_off, base, rtol=0, atol=1e-6)  # scale 0 is the base model
    assert torch.equal(again, with_lora)  # and the scale is restored after the call
