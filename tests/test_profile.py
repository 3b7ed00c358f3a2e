"""Profiling: parameter counts, MACs with their cross-check, listed uncounted operators, speed."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fbench.profile import count_macs, count_macs_torch, count_parameters, measure_speed, profile_architecture


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)
        self.register_buffer("scale", torch.ones(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x))) * self.scale[:, None, None]
        return self.fc(x.mean(dim=(2, 3)))


def test_parameters_and_buffers_are_counted_apart():
    model = ConvNet()
    model.fc.weight.requires_grad_(False)
    total, trainable, buffers = count_parameters(model)
    assert total == 3 * 8 * 9 + 8 + 16 + 8 * 5 + 5
    assert trainable == total - 40
    assert buffers == 8 + 8 + 1 + 8  # running mean, var, num_batches_tracked, scale


def test_conv_and_linear_macs_are_exact_and_the_rest_is_listed():
    model = ConvNet().eval()
    example = torch.randn(1, 3, 10, 10)
    count = count_macs(model, example)
    assert count.macs == 8 * 3 * 9 * 10 * 10 + 8 * 5
    assert count.by_operator == {"conv": 8 * 3 * 9 * 100, "linear": 40}
    assert {"aten::batch_norm", "aten::relu", "aten::mul", "aten::mean"} <= set(count.not_counted)
    assert count.unrecognised == []
    assert count_macs_torch(model, example) == count.macs


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(16, 48)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).view(x.shape[0], x.shape[1], 3, 2, 8).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v).sum(dim=(1, 2, 3))


def test_fused_attention_is_counted_by_both_counters():
    model = Attention().eval()
    example = torch.randn(1, 10, 16)
    count = count_macs(model, example)
    attention = 1 * 2 * 10 * 10 * (8 + 8)  # batch, heads, L, S, E + Ev
    assert count.by_operator["scaled_dot_product_attention"] == attention
    assert count.macs == 10 * 16 * 48 + attention
    assert count_macs_torch(model, example) == count.macs


class Unknown(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.inv(x)


def test_operators_unknown_to_the_counter_are_flagged():
    count = count_macs(Unknown(), torch.eye(4)[None] * 2)
    assert "aten::linalg_inv" in count.not_counted
    assert "aten::linalg_inv" in count.unrecognised


def test_speed_is_measured_with_medians():
    latency_ms, latency_n, throughput, throughput_n = measure_speed(
        ConvNet(), (3, 16, 16), torch.device("cpu"), batch_size=4, warmup=1, repeats=5
    )
    assert latency_ms > 0 and throughput > 0
    assert latency_n == 5 and throughput_n == 5


def test_profile_architecture_on_a_timm_model():
    result = profile_architecture("timm/resnet18", {"in_chans": "1"}, num_classes=7, input_size=(64, 64),
                                  device="cpu", speed=False)
    assert result.input_size == (1, 64, 64)
    # 11,180,103 at 3 channels (timm's resnet18, 7 classes) less 2 x 64 x 7 x 7 stem weights
    assert result.params == result.trainable_params == 11_180_103 - 2 * 64 * 49
    assert not result.macs_disagree
    assert result.unrecognised_operators == []
    assert result.latency_ms is None
