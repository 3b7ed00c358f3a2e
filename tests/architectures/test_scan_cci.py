"""SCAN-CCI against the numbers and behaviour in specs/scan_cci.md (CPU, small batches)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from fbench.architectures.scan_cci import SCANCCI, extract_patches
from fbench.errors import FbenchError, VariantError
from fbench.registry import get_architecture


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def arch():
    return get_architecture("scan_cci")


@pytest.fixture(scope="module")
def model(arch) -> SCANCCI:
    torch.manual_seed(0)
    return arch.build(7)


def test_param_counts(arch, model):
    assert n_params(model) == 70_196_307
    assert n_params(model.trunk) == 8_543_296
    assert n_params(arch.build(8)) == 70_197_589
    assert n_params(arch.build(7, shared_heads=True)) == 13_536_339


def test_macs(model):
    from fbench.profile import count_macs, count_macs_torch

    model.eval()
    example = torch.randn(1, 3, 224, 224)
    counted = count_macs(model, example)
    assert counted.macs == pytest.approx(6.98e9, rel=0.01)
    assert counted.by_operator["conv"] == pytest.approx(3.278e9 + 2 * 1.85e9, rel=0.01)
    assert counted.unrecognised == []
    assert count_macs_torch(model, example) == pytest.approx(counted.macs, rel=0.02)


def _positions() -> torch.Tensor:
    return torch.arange(784.0).reshape(1, 1, 28, 28)


@pytest.mark.parametrize("layout", ["faithful", "fixed"])
def test_patches_cover_every_position_once(layout):
    patches = extract_patches(_positions(), layout)
    assert len(patches) == 25
    values = torch.cat([p.flatten() for p in patches]).sort().values
    assert torch.equal(values, torch.arange(784.0))
    assert [tuple(p.shape[-2:]) for p in patches] == [(6, 6)] * 16 + [(6, 4)] * 4 + [(4, 6)] * 4 + [(4, 4)]


def test_faithful_bottom_patches_are_folded_rows_and_only_they_differ():
    x = torch.randn(2, 3, 28, 28)
    faithful, fixed = extract_patches(x, "faithful"), extract_patches(x, "fixed")
    for j in range(4):
        assert torch.equal(faithful[20 + j], x[:, :, 24 + j, :24].reshape(2, 3, 4, 6))
        assert torch.equal(fixed[20 + j], x[:, :, 24:28, 6 * j:6 * j + 6])
    same = [torch.equal(a, b) for a, b in zip(faithful, fixed)]
    assert same == [True] * 20 + [False] * 4 + [True]
    # The released code's expression, as a cross-check of the bug reproduced.
    released = x[:, :, 24:, :24].unfold(3, 6, 6).permute(0, 2, 1, 3, 4)
    for j in range(4):
        assert torch.equal(faithful[20 + j], released[:, j])


def test_training_loss_and_forward_match_heads(model):
    model.eval()  # deterministic BN, so separate calls agree
    torch.manual_seed(1)
    images, targets = torch.randn(2, 3, 224, 224), torch.tensor([0, 5])
    criterion = nn.CrossEntropyLoss()
    with torch.no_grad():
        heads = model.forward_heads(images)
        loss, logits = model.training_loss(images, targets, criterion)
        mean = model(images)
    assert len(heads) == 5
    expected = 0.2 * criterion(heads[0], targets) + 0.8 * sum(criterion(h, targets) for h in heads[1:])
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logits, torch.stack(heads).mean(0))
    torch.testing.assert_close(mean, torch.stack(heads).mean(0))


VARIANTS = [
    {},
    {"shared_heads": True},
    {"patch_layout": "fixed"},
    {"scan_branch": False},
    {"cci_branch": False},
    {"global_scan": False},
    {"local_scan": False},
    {"eca": False},
    {"scan_branch": False, "cci_branch": False},
]


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "full")
def test_variant_trains(arch, options):
    torch.manual_seed(0)
    net = arch.build(7, **options).train()
    images, targets = torch.randn(2, 3, 224, 224), torch.tensor([1, 6])
    loss, logits = net.training_loss(images, targets, nn.CrossEntropyLoss())
    loss.backward()
    assert logits.shape == (2, 7) and torch.isfinite(logits).all() and torch.isfinite(loss)
    assert net.trunk.conv1.weight.grad is not None
    heads = len(net.forward_heads(images[:1]))
    expected_heads = int(options.get("scan_branch", True)) + 4 * int(options.get("cci_branch", True))
    assert heads == max(expected_heads, 1)


def test_variant_shapes(arch):
    assert arch.build(7, global_scan=False).attention.fc.in_features == 512
    assert arch.build(7, local_scan=False).attention.fc.in_features == 512
    assert arch.build(7, scan_branch=False, cci_branch=False).baseline_fc.in_features == 1024


def test_empty_attention_branch_is_refused(arch):
    with pytest.raises(VariantError, match="local_scan"):
        arch.build(7, global_scan=False, local_scan=False)


def test_non_224_input_is_refused(model):
    with pytest.raises(VariantError, match="224"):
        model(torch.randn(1, 3, 192, 192))


def _trunk_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in net.state_dict().items() if not k.startswith(("layer4.", "fc."))}


def test_backbone_weights_load(arch, tmp_path):
    torch.manual_seed(3)
    resnet = torchvision.models.resnet50(weights=None)
    with torch.no_grad():
        resnet.bn1.running_mean.uniform_()  # a buffer that a fresh trunk would not match by chance
    path = tmp_path / "resnet50.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in resnet.state_dict().items()}}, path)
    net = arch.build(7, backbone_weights=str(path))
    loaded = net.trunk.state_dict()
    for key, value in _trunk_state(resnet).items():
        assert torch.equal(loaded[key], value), key


def test_backbone_weights_errors(arch, tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FbenchError, match="nope.pth"):
        arch.build(7, backbone_weights=str(missing))
    wrong = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), wrong)
    with pytest.raises(FbenchError, match="resnet18.pth") as info:
        arch.build(7, backbone_weights=str(wrong))
    assert "torchvision-style ResNet-50" in str(info.value)


def _norms(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]


def test_bn_first_epoch_only_keeps_batchnorm_in_eval_mode_after_epoch_one(arch):
    torch.manual_seed(0)
    net = arch.build(7, bn_first_epoch_only=True, scan_branch=False).train()
    net.train_epoch_start(1)
    assert all(m.training for m in _norms(net))
    net.train()  # what the engine does at the start of every epoch, before the hook
    net.train_epoch_start(2)
    assert net.training and not any(m.training for m in _norms(net))
    before = net.trunk.bn1.running_mean.clone()
    loss, _ = net.training_loss(torch.randn(1, 3, 224, 224), torch.tensor([3]), nn.CrossEntropyLoss())
    loss.backward()
    assert torch.equal(net.trunk.bn1.running_mean, before)  # running statistics frozen
    assert net.trunk.bn1.weight.grad is not None  # the affine parameters still train, as in the released loop
    default = arch.build(7, scan_branch=False).train()
    default.train_epoch_start(2)
    assert all(m.training for m in _norms(default))


def test_a_trunk_from_scratch_is_noted_as_not_the_papers_setting(arch, tmp_path):
    [note] = arch.setting_notes({})
    assert note.startswith("trunk from scratch: not the paper's setting") and "backbone_weights" in note
    assert arch.setting_notes({"backbone_weights": str(tmp_path / "resnet50.pth")}) == []
