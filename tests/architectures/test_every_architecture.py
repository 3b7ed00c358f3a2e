"""One check over every registered architecture and each of its declared variants, like timm's
tests/test_models.py: build, forward and backward on a tiny input, finite logits of the right shape."""

from __future__ import annotations

import pytest
import torch

from fbench.contract import Architecture, compute_loss
from fbench.registry import ARCHITECTURES, get_architecture

# A few timm models stand for the family (every timm model would take hours).
TIMM_SAMPLES = ("timm/resnet18", "timm/mobilenetv3_large_100", "timm/efficientnet_b0", "timm/convnext_atto",
                "timm/vit_tiny_patch16_224")
# Inputs as small as each architecture allows: LANMSFF needs sides divisible by 32, SCAN-CCI exactly 224.
TINY_SIDE = {"lanmsff": 32, "scan_cci": 224}


def _variants(architecture: Architecture) -> list[dict[str, object]]:
    """The defaults, then each boolean flipped alone and each other choice of a Literal option."""
    variants: list[dict[str, object]] = [{}]
    for option in architecture.options:
        if option.kind is bool:
            variants.append({option.name: not option.default})
        elif option.choices:
            variants += [{option.name: choice} for choice in option.choices if choice != option.default]
    return variants


def _cases() -> list[tuple[str, dict[str, object]]]:
    cases = []
    for name in list(ARCHITECTURES.names()) + list(TIMM_SAMPLES):
        cases += [(name, variant) for variant in _variants(get_architecture(name))]
    return cases


@pytest.mark.parametrize("name, variant", _cases(), ids=lambda v: str(v))
def test_forward_backward(name: str, variant: dict[str, object]):
    architecture = get_architecture(name)
    options = dict(variant)
    if name.startswith("timm/") and "img_size" in {o.name for o in architecture.options}:
        options.setdefault("img_size", 64)
    spec = architecture.resolve_spec(options)
    side = TINY_SIDE.get(name, 64)
    model = architecture.build(3, **options).train()
    batch = 1 if name == "scan_cci" else 2
    images = torch.randn(batch, spec.channels, side, side)
    targets = torch.arange(batch) % 3
    loss, logits = compute_loss(model, images, targets, torch.nn.CrossEntropyLoss())
    loss.backward()
    assert logits.shape == (batch, 3)
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
