"""The architecture contract: declared variant options, spec resolution, the training-loss hook."""

from __future__ import annotations

from typing import Literal

import pytest
import torch
import torch.nn as nn

from fbench.contract import (
    Architecture,
    ArchitectureSpec,
    Recipe,
    compute_loss,
    options_from_signature,
)
from fbench.errors import PluginError, VariantError

SPEC = ArchitectureSpec(input_size=(3, 32, 32), mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2), recipe=Recipe())


def factory(num_classes: int, *, depth: int = 2, scale: float = 1.0, act: Literal["relu", "gelu"] = "relu",
            residual: bool = True, weights: str | None = None, in_chans: int = 3) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * 32 * 32, num_classes))


ARCH = Architecture.from_factory("toy", factory, SPEC)


def test_options_are_read_from_the_signature():
    described = [option.describe() for option in ARCH.options]
    assert described == [
        "depth: int = 2", "scale: float = 1.0", "act: relu|gelu = relu", "residual: bool = True",
        "weights: str|none = None", "in_chans: int = 3",
    ]


def test_options_parse_strings_and_fill_defaults():
    resolved = ARCH.resolve_options({"depth": "4", "scale": "0.5", "act": "gelu", "residual": "false",
                                     "weights": "none"})
    assert resolved == {"depth": 4, "scale": 0.5, "act": "gelu", "residual": False, "weights": None,
                        "in_chans": 3}


def test_unknown_option_lists_valid_ones():
    with pytest.raises(VariantError, match=r"no variant option 'dept'.*depth: int = 2.*residual: bool"):
        ARCH.resolve_options({"dept": 3})


@pytest.mark.parametrize("key, value, message", [
    ("depth", "two", "not a valid int"),
    ("depth", 2.5, "not a valid int"),
    ("residual", "maybe", "not a boolean"),
    ("act", "tanh", "not one of: relu, gelu"),
    ("depth", None, "cannot be empty"),
])
def test_bad_option_values(key, value, message):
    with pytest.raises(VariantError, match=message):
        ARCH.resolve_options({key: value})


def test_factory_must_declare_options_keyword_only():
    def positional(num_classes: int, depth: int = 2) -> nn.Module:
        return nn.Identity()

    with pytest.raises(PluginError, match="must be keyword-only"):
        options_from_signature(positional)

    def untyped(num_classes: int, *, depth=2) -> nn.Module:
        return nn.Identity()

    with pytest.raises(PluginError, match="must be annotated"):
        options_from_signature(untyped)

    def no_classes(*, depth: int = 2) -> nn.Module:
        return nn.Identity()

    with pytest.raises(PluginError, match="num_classes"):
        options_from_signature(no_classes)


def test_in_chans_option_changes_the_spec_and_its_statistics():
    spec = ARCH.resolve_spec({"in_chans": 1})
    assert spec.input_size == (1, 32, 32)
    assert spec.mean == pytest.approx((0.4,))
    assert ARCH.resolve_spec().input_size == (3, 32, 32)


def test_spec_checks_statistics_against_channels():
    with pytest.raises(PluginError, match="3 input channels"):
        ArchitectureSpec(input_size=(3, 8, 8), mean=(0.5,), std=(0.5,), recipe=Recipe())


def test_recipe_rejects_unknown_optimizer():
    with pytest.raises(PluginError, match="unknown optimizer 'lion'"):
        Recipe(optimizer="lion")


def test_build_uses_spec_label_count_by_default():
    assert ARCH.build()[1].out_features == 7
    assert ARCH.build(3)[1].out_features == 3
    with pytest.raises(VariantError, match="at least 2"):
        ARCH.build(1)


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.a(x) + self.b(x)) / 2

    def training_loss(self, images, targets, criterion):
        a, b = self.a(images), self.b(images)
        return criterion(a, targets) + criterion(b, targets), (a + b) / 2


def test_compute_loss_uses_the_model_hook_when_present():
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    criterion = nn.CrossEntropyLoss()
    model = TwoHeads()
    loss, logits = compute_loss(model, x, y, criterion)
    assert torch.allclose(loss, criterion(model.a(x), y) + criterion(model.b(x), y))
    assert torch.allclose(logits, model(x))
    plain = nn.Linear(4, 3)
    loss, logits = compute_loss(plain, x, y, criterion)
    assert torch.allclose(loss, criterion(plain(x), y))
