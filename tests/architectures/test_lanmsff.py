"""LANMSFF port: sizes, compute and layer semantics against shared/specs/lanmsff.md (sections 3, 4 and 8)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fbench.architectures.lanmsff import LANMSFF, PWFS, ChannelShuffle, MassAtt
from fbench.errors import FbenchError, ProfileError
from fbench.registry import get_architecture

SPEC_PARAMS_7 = 356_294
SPEC_PARAMS_8 = 356_451
# Keras model.summary() subtotals (spec 3.2): they include BN moving mean/variance, buffers in torch.
SPEC_KERAS_BLOCKS = {"block1": 45_738, "block2": 84_107, "block3": 113_256, "block4": 114_206, "head": 1_099}
SPEC_MACS = 300.6e6
SPEC_BLOCK_MACS = {"block1": 183.3e6, "block2": 81.6e6, "block3": 28.7e6, "block4": 7.0e6}


def build(num_classes: int = 7, **options: object) -> LANMSFF:
    torch.manual_seed(0)
    return get_architecture("lanmsff").build(num_classes, **options)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- size -------------------------------------------------------------------------------------------------
def test_parameter_count_matches_the_keras_trainable_count() -> None:
    model = build(7)
    assert count(model) == SPEC_PARAMS_7
    assert all(p.requires_grad for p in model.parameters())
    assert count(build(8)) == SPEC_PARAMS_8


def test_block_subtotals_match_the_keras_summary() -> None:
    model = build(7)
    for name, expected in SPEC_KERAS_BLOCKS.items():
        block = getattr(model, name)
        running = sum(b.numel() for n, b in block.named_buffers() if n.endswith(("running_mean", "running_var")))
        assert count(block) + running == expected, name
    bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert 2 * bn_channels == 2_112  # the Keras non-trainable count


@pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")
def test_macs_match_the_spec() -> None:
    from fvcore.nn import FlopCountAnalysis, jit_handles

    model = build(7).eval()
    analysis = FlopCountAnalysis(model, torch.zeros(1, 1, 64, 64))
    analysis.clear_op_handles()
    analysis.set_op_handle(
        "aten::_convolution", jit_handles.conv_flop_jit,
        "aten::linear", jit_handles.linear_flop_jit,
        "aten::addmm", jit_handles.addmm_flop_jit,
    )
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    total = analysis.total()
    by_module = analysis.by_module()
    print(f"MACs total {total / 1e6:.2f}M; " + ", ".join(
        f"{name} {by_module[name] / 1e6:.2f}M" for name in SPEC_BLOCK_MACS))
    assert total == pytest.approx(SPEC_MACS, rel=0.01)
    from fbench.profile import count_macs, count_macs_torch

    counted = count_macs(model, torch.zeros(1, 1, 64, 64))
    assert counted.macs == total and counted.unrecognised == []
    assert count_macs_torch(model, torch.zeros(1, 1, 64, 64)) == pytest.approx(total, rel=0.02)
    for name, expected in SPEC_BLOCK_MACS.items():
        assert by_module[name] == pytest.approx(expected, rel=0.01), name


# -- layers -----------------------------------------------------------------------------------------------
def test_pwfs_keeps_max_and_median_and_drops_the_minimum() -> None:
    # Channels [0:2], [2:4], [4:6] are the three groups; each position holds one triplet.
    s1 = torch.tensor([1.0, -5.0]).view(1, 2, 1, 1)
    s2 = torch.tensor([3.0, 7.0]).view(1, 2, 1, 1)
    s3 = torch.tensor([2.0, -1.0]).view(1, 2, 1, 1)
    out = PWFS()(torch.cat([s1, s2, s3], dim=1))
    assert out.shape == (1, 2, 1, 1)
    assert out.flatten().tolist() == [0.5 * (3.0 + 2.0), 0.5 * (7.0 + -1.0)]

    x = torch.randn(2, 66, 5, 5)
    groups = torch.stack(x.chunk(3, dim=1))
    expected = 0.5 * (groups.max(dim=0).values + groups.median(dim=0).values)
    assert torch.allclose(PWFS()(x), expected, atol=1e-6)
    assert PWFS()(x).shape[1] == 22


def test_channel_shuffle_interleaves_the_two_halves() -> None:
    c = 8
    x = torch.arange(c, dtype=torch.float32).view(1, c, 1, 1).expand(2, c, 3, 3).contiguous()
    order = ChannelShuffle(2)(x)[0, :, 0, 0].tolist()
    assert order == [0, 4, 1, 5, 2, 6, 3, 7]


@pytest.mark.parametrize(("channels", "side"), [(72, 32), (84, 8)])
def test_mass_att_keeps_the_input_size(channels: int, side: int) -> None:
    att = MassAtt(channels)
    x = torch.randn(2, channels, side, side)
    assert att.spatial_map(x).shape == (2, 1, side, side)
    assert att.channel_map(x).shape == (2, channels, 1, 1)
    attention = att(x)
    assert attention.shape == x.shape
    assert ((attention > 0) & (attention < 1)).all()
    assert count(att) == {72: 2_963, 84: 3_914}[channels]


def test_mass_att_uses_tf_same_padding() -> None:
    torch.manual_seed(1)
    att = MassAtt(72)
    for module in (att.down1, att.down2, att.up1, att.up2):
        nn.init.uniform_(module.bias, -0.5, 0.5)
    x = torch.randn(2, 72, 32, 32)
    m = x.mean(dim=1, keepdim=True)

    # Stride-2 convs: pad 0 before and 1 after, then a valid conv.
    d1 = F.relu(F.conv2d(F.pad(m, (0, 1, 0, 1)), att.down1.weight, att.down1.bias, stride=2))
    d2 = F.relu(F.conv2d(F.pad(d1, (0, 1, 0, 1)), att.down2.weight, att.down2.bias, stride=2))
    assert d1.shape[-1] == 16 and d2.shape[-1] == 8
    symmetric = F.relu(F.conv2d(m, att.down1.weight, att.down1.bias, stride=2, padding=1))
    assert not torch.allclose(d1, symmetric)  # torch's padding=1 samples a shifted grid

    # TF's "same" transposed conv is the adjoint of that padded stride-2 conv (conv2d_backprop_input).
    def transposed_same(z: torch.Tensor, conv: nn.ConvTranspose2d) -> torch.Tensor:
        b, _, h, w = z.shape
        probe = torch.zeros(b, conv.out_channels, 2 * h, 2 * w, requires_grad=True)
        forward = F.conv2d(F.pad(probe, (0, 1, 0, 1)), conv.weight, stride=2)
        (grad,) = torch.autograd.grad(forward, probe, grad_outputs=z)
        return grad + conv.bias.view(1, -1, 1, 1)

    u1 = F.relu(transposed_same(d2, att.up1))
    expected = torch.sigmoid(transposed_same(u1, att.up2))
    assert torch.allclose(att.spatial_map(x), expected, atol=1e-6)


# -- build, variants, init --------------------------------------------------------------------------------
def test_layer_settings_follow_keras_defaults() -> None:
    model = build(7)
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batch_norms and all(m.momentum == 0.01 and m.eps == 1e-3 for m in batch_norms)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 4 and all(m.p == 0.4 for m in dropouts)
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            depthwise = module.groups > 1
            assert (module.bias is None) == depthwise, name
            if module.bias is not None:
                assert torch.all(module.bias == 0), name
            kh, kw = module.kernel_size
            bound = math.sqrt(6.0 / (kh * kw * module.in_channels))  # Keras he_uniform fan-in
            assert module.weight.abs().max() <= bound, name
            assert module.weight.abs().max() > 0.8 * bound, name
        elif isinstance(module, (nn.Linear, nn.ConvTranspose2d)):
            assert torch.all(module.bias == 0), name
    assert model.num_features == 156


@pytest.mark.parametrize(
    ("options", "expected_params"),
    [
        ({}, SPEC_PARAMS_7),
        ({"mass_att": False}, SPEC_PARAMS_7 - 2_963 - 3_914),
        ({"pwfs": False}, SPEC_PARAMS_7 - 1_099 + 300 * 7 + 7),
        ({"channel_shuffle": False}, SPEC_PARAMS_7),
        ({"multi_scale_fusion": False}, SPEC_PARAMS_7 - 1_099 + 84 * 7 + 7),
        ({"dilation": False}, SPEC_PARAMS_7),
        ({"in_chans": 3}, SPEC_PARAMS_7 + 2 * 9 * 66),
    ],
)
def test_variants_build_and_train(options: dict[str, object], expected_params: int) -> None:
    model = build(7, **options)
    assert count(model) == expected_params
    channels = int(options.get("in_chans", 1))  # type: ignore[call-overload]
    x = torch.rand(2, channels, 64, 64)
    logits = model.train()(x)
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 6])).backward()
    assert model.head.weight.grad is not None and model.block1.conv1.conv.weight.grad is not None


def test_variant_switches_change_the_graph() -> None:
    assert build(7, mass_att=False).block2.mass_att is None
    assert isinstance(build(7, channel_shuffle=False).block4.two_path.shuffle, nn.Identity)
    assert isinstance(build(7, pwfs=False).pwfs, nn.Identity)
    default, flat = build(7).block2.two_path, build(7, dilation=False).block2.two_path
    assert [default.l1.conv.dilation, default.l2.conv.depthwise.dilation, default.l3.conv.dilation] == [(2, 2)] * 3
    assert [flat.l1.conv.dilation, flat.l2.conv.depthwise.dilation, flat.l3.conv.dilation] == [(1, 1)] * 3


def test_registration_and_spec() -> None:
    architecture = get_architecture("lanmsff")
    names = [option.name for option in architecture.options]
    assert names == ["in_chans", "mass_att", "pwfs", "channel_shuffle", "multi_scale_fusion", "dilation"]
    assert architecture.options[0].choices == (1, 3)
    spec = architecture.spec
    assert spec.input_size == (1, 64, 64) and spec.num_classes == 7
    assert architecture.resolve_spec({"in_chans": "3"}).input_size == (3, 64, 64)
    recipe = spec.recipe
    assert (recipe.optimizer, recipe.lr, recipe.eps, recipe.batch_size, recipe.epochs) == ("adam", 1e-3, 1e-7, 32, 100)
    assert recipe.schedule.params["patience"] == 8 and recipe.early_stopping is not None
    assert recipe.early_stopping.patience == 14 and not recipe.early_stopping.restore_best
    assert recipe.augmentation_mode == "offline" and len(recipe.augmentation) == 4


def test_larger_inputs_divisible_by_32_work() -> None:
    assert build(7).eval()(torch.rand(1, 1, 96, 128)).shape == (1, 7)


@pytest.mark.parametrize(
    ("options", "shape"),
    [({}, (1, 1, 48, 48)), ({}, (1, 1, 64, 80)), ({}, (1, 3, 64, 64)), ({"in_chans": 3}, (1, 1, 64, 64)),
     ({}, (1, 64, 64))],
)
def test_wrong_input_raises_a_clear_error(options: dict[str, object], shape: tuple[int, ...]) -> None:
    model = build(7, **options)
    with pytest.raises(ProfileError, match=r"LANMSFF needs an input of N x [13]x64x64") as error:
        model(torch.rand(*shape))
    assert isinstance(error.value, FbenchError)
    assert str(tuple(shape)) in str(error.value)


def test_learning_rate_is_cut_after_nine_flat_epochs_as_in_keras() -> None:
    """Keras ReduceLROnPlateau(patience=9) cuts after 9 epochs without improvement (spec section 5)."""
    from fbench.engine.optim import build_optimizer, build_scheduler, scheduler_step

    recipe = get_architecture("lanmsff").spec.recipe
    model = build(7)
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe, epochs=100, steps_per_epoch=1)
    scheduler_step(scheduler, {"val_loss": 1.0})  # the best epoch
    for _ in range(8):
        scheduler_step(scheduler, {"val_loss": 1.0})
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    scheduler_step(scheduler, {"val_loss": 1.0})  # the ninth epoch without improvement
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)


def _plateau_cuts(recipe: object, losses: list[float]) -> list[int]:
    """The epochs (from 1) after which the recipe's ReduceLROnPlateau cut the learning rate, fed ``losses``."""
    from fbench.engine.optim import build_optimizer, build_scheduler, scheduler_step

    optimizer = build_optimizer(build(7), recipe)
    scheduler = build_scheduler(optimizer, recipe, epochs=len(losses), steps_per_epoch=1)
    cuts, lr = [], optimizer.param_groups[0]["lr"]
    for epoch, loss in enumerate(losses, start=1):
        scheduler_step(scheduler, {"val_loss": loss})
        if optimizer.param_groups[0]["lr"] < lr:
            cuts.append(epoch)
        lr = optimizer.param_groups[0]["lr"]
    return cuts


def test_plateau_min_delta_is_absolute_as_in_keras() -> None:
    """Keras min_delta=1e-4 is absolute (loss < best - 1e-4); torch's default threshold is relative (loss <
    best * (1 - 1e-4)). Below a loss of 1 the relative rule takes smaller steps for improvements: here epochs 2-10
    each drop by 1e-5 (5e-6 is the relative bar at 0.05) but 9e-5 in all, under the absolute 1e-4, then 11-19
    are flat. Keras (absolute) cuts after epoch 10, nine epochs without improvement; the relative rule after 19."""
    from dataclasses import replace

    from fbench.contract import Schedule

    recipe = get_architecture("lanmsff").spec.recipe
    assert recipe.schedule.params["threshold_mode"] == "abs" and recipe.schedule.params["threshold"] == 1e-4
    losses = [0.05 - 1e-5 * k for k in range(10)] + [0.05 - 9e-5] * 9
    assert _plateau_cuts(recipe, losses) == [10, 19]  # the second cut: nine more epochs without improvement
    relative = {k: v for k, v in recipe.schedule.params.items() if k not in ("threshold", "threshold_mode")}
    torch_default = replace(recipe, schedule=Schedule("reduce_on_plateau", relative))
    assert _plateau_cuts(torch_default, losses) == [19]
