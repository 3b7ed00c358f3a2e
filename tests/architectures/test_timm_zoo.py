"""timm models as baselines: the family resolver, options, spec and local-only pretrained weights."""

from __future__ import annotations

import pytest
import torch

from fbench.errors import FbenchError, UnknownNameError
from fbench.registry import ARCHITECTURES, get_architecture


def test_family_members_and_patterns():
    family = ARCHITECTURES.families()["timm"]
    assert "timm/resnet18" in family.members()
    assert set(family.members("efficientnet_b0*")) >= {"timm/efficientnet_b0"}


def test_spec_comes_from_the_timm_config():
    architecture = get_architecture("timm/resnet18")
    assert architecture.spec.input_size == (3, 224, 224)
    assert architecture.spec.mean == pytest.approx((0.485, 0.456, 0.406))
    assert architecture.spec.recipe.optimizer == "adamw"
    assert architecture.resolve_spec({"in_chans": 1, "img_size": 112}).input_size == (1, 112, 112)


def test_num_classes_and_in_chans_are_set():
    model = get_architecture("timm/resnet18").build(7, in_chans=1).eval()
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 7)


def test_img_size_reaches_models_that_take_it():
    model = get_architecture("timm/vit_tiny_patch16_224").build(5, img_size=32).eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_unknown_model_suggests_names():
    with pytest.raises(UnknownNameError, match="Did you mean 'timm/resnet18'"):
        get_architecture("timm/resnet_18")


def test_pretrained_weights_only_from_a_local_file(tmp_path):
    source = get_architecture("timm/resnet18").build(7)
    checkpoint = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), checkpoint)
    loaded = get_architecture("timm/resnet18").build(7, pretrained_file=str(checkpoint))
    assert torch.equal(loaded.conv1.weight, source.conv1.weight)
    with pytest.raises(FbenchError, match="does not exist"):
        get_architecture("timm/resnet18").build(7, pretrained_file=str(tmp_path / "missing.pth"))


def test_pretrained_file_that_is_not_a_checkpoint_is_one_error(tmp_path):
    not_a_checkpoint = tmp_path / "notes.pth"
    not_a_checkpoint.write_text("these are my notes, not weights\n")
    with pytest.raises(FbenchError, match=r"pretrained_file '.*notes\.pth' could not be loaded as a checkpoint"):
        get_architecture("timm/resnet18").build(7, pretrained_file=str(not_a_checkpoint))
