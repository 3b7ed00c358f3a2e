"""LANMSFF: a lightweight attention-based network with multi-scale feature fusion (Ezati et al., 2024).

A PyTorch port of the official Keras code (github.com/AE-1129/LANMSFF @ 6c8d37d, the 2026 generation),
following ``shared/specs/lanmsff.md`` sections 3 and 4: four blocks (66, 72, 78, 84 channels), the
``two_path`` grouped/dilated block, MassAtt (simultaneous channel and spatial attention), PWFS (point-wise
feature selection) and a fusion of the four block outputs by global average pooling into one linear head.

The model outputs logits; the Keras softmax is folded into ``CrossEntropyLoss`` (spec section 4, item 10).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from fbench.contract import ArchitectureSpec, Augment, EarlyStopping, Recipe, Schedule
from fbench.errors import ProfileError
from fbench.registry import register_architecture

__all__ = [
    "LANMSFF",
    "LANMSFF_SPEC",
    "PWFS",
    "Block1",
    "Block3",
    "ChannelShuffle",
    "ConvBNReLU",
    "GroupAttentionBlock",
    "MassAtt",
    "SeparableConv2d",
    "TwoPath",
    "lanmsff",
]

# Keras BatchNormalization defaults: momentum 0.99 on the running average is torch momentum 0.01 (spec 4.5).
BN_MOMENTUM = 0.01
BN_EPS = 1e-3
DROPOUT = 0.4
WIDTHS = (66, 72, 78, 84)
SIDE_MULTIPLE = 32  # three 2x pools, then MassAtt's spatial path halves the side twice (spec 3.4)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class SeparableConv2d(nn.Module):
    """Keras ``SeparableConv2D``: a depthwise 3x3 (no bias, dilation on it) then a pointwise 1x1 with bias
    (spec section 4, item 4)."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=dilation, dilation=dilation,
                                   groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ConvBNReLU(nn.Sequential):
    """A 3x3 "same" conv (plain or separable, with bias) followed by BN and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1, separable: bool = False) -> None:
        conv: nn.Module
        if separable:
            conv = SeparableConv2d(in_channels, out_channels, dilation)
        else:
            conv = nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation)
        super().__init__()
        self.conv = conv
        self.bn = batch_norm(out_channels)
        self.relu = nn.ReLU(inplace=True)


class BlockEnd(nn.Sequential):
    """The end of every block, in the Keras order: BN -> MaxPool 2 -> ReLU -> Dropout 0.4 (spec 4.9)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = batch_norm(channels)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(DROPOUT)


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle: view (B, g, C/g, H, W), swap the two channel axes, flatten.

    With ``groups=2`` the output order is 0, C/2, 1, C/2+1, ... (spec section 4, item 8)."""

    def __init__(self, groups: int = 2) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class TwoPath(nn.Module):
    """The ``two_path`` block of blocks 2 and 4 (spec section 3.3).

    Stage 1 is a true group conv: the (shuffled) input is split in halves, the H-path (dilation 1) sees the
    first half and the L-path (dilation 2) the second. Stages 2 (separable) and 3 (plain) give both paths all
    channels. Each stage concatenates [H, L] into ``filters`` channels."""

    def __init__(self, in_channels: int, filters: int, *, shuffle: bool = True, dilation: int = 2) -> None:
        super().__init__()
        if in_channels % 2 or filters % 2:
            raise ValueError(f"TwoPath needs even channel counts, got {in_channels} -> {filters}")
        half, g = in_channels // 2, filters // 2
        self.shuffle: nn.Module = ChannelShuffle(2) if shuffle else nn.Identity()
        self.h1 = ConvBNReLU(half, g)
        self.l1 = ConvBNReLU(half, g, dilation=dilation)
        self.h2 = ConvBNReLU(filters, g, separable=True)
        self.l2 = ConvBNReLU(filters, g, dilation=dilation, separable=True)
        self.h3 = ConvBNReLU(filters, g)
        self.l3 = ConvBNReLU(filters, g, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = self.shuffle(x).chunk(2, dim=1)
        x = torch.cat([self.h1(first), self.l1(second)], dim=1)
        x = torch.cat([self.h2(x), self.l2(x)], dim=1)
        return torch.cat([self.h3(x), self.l3(x)], dim=1)


class MassAtt(nn.Module):
    """Mass attention (spec section 3.4): returns the map ``A = Mc * Ms`` (B x C x H x W), not ``A * X``.

    Channel map ``Mc``: GAP -> Linear(C/ratio) -> ReLU -> Linear(C) -> sigmoid.
    Spatial map ``Ms``: channel mean -> conv s2 (2) -> conv s2 (4) -> convT s2 (4) -> convT s2 (1) -> sigmoid;
    H and W must be divisible by 4."""

    def __init__(self, channels: int, ratio: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // ratio)
        self.fc2 = nn.Linear(channels // ratio, channels)
        self.down1 = nn.Conv2d(1, 2, 3, stride=2)
        self.down2 = nn.Conv2d(2, 4, 3, stride=2)
        self.up1 = nn.ConvTranspose2d(4, 4, 3, stride=2)
        self.up2 = nn.ConvTranspose2d(4, 1, 3, stride=2)

    def channel_map(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=(2, 3))
        weights = torch.sigmoid(self.fc2(F.relu(self.fc1(squeezed))))
        return weights[:, :, None, None]

    def spatial_map(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=1, keepdim=True)
        # TF "same" for an even side, k3, s2 pads 0 before and 1 after; padding=1 would shift the grid.
        m = F.relu(self.down1(F.pad(m, (0, 1, 0, 1))))
        m = F.relu(self.down2(F.pad(m, (0, 1, 0, 1))))
        # TF "same" transposed conv, k3, s2: the full 2n+1 output cropped at the end to 2n.
        n = m.shape[-1]
        m = F.relu(self.up1(m)[..., : 2 * m.shape[-2], : 2 * n])
        n = m.shape[-1]
        return torch.sigmoid(self.up2(m)[..., : 2 * m.shape[-2], : 2 * n])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_map(x) * self.spatial_map(x)


class PWFS(nn.Module):
    """Point-wise feature selection (spec section 3.5): parameter-free, C -> C/3 channels.

    The channels form 3 contiguous groups; at every position the triplet's minimum is dropped and the
    output is ``0.5 * (max + median)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] % 3:
            raise ValueError(f"PWFS needs a channel count divisible by 3, got {x.shape[1]}")
        s1, s2, s3 = x.chunk(3, dim=1)
        high = torch.maximum(torch.maximum(s1, s2), s3)
        low = torch.minimum(torch.minimum(s1, s2), s3)
        median = s1 + s2 + s3 - high - low
        return 0.5 * (high + median)


class Block1(nn.Module):
    """Block 1 (spec 3.2, rows 1-6): conv 3x3 -> separable 3x3 -> conv 3x3, 66 channels, then the end."""

    def __init__(self, in_chans: int, width: int = WIDTHS[0]) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(in_chans, width)
        self.conv2 = ConvBNReLU(width, width, separable=True)
        self.conv3 = nn.Conv2d(width, width, 3, padding=1)
        self.end = BlockEnd(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.end(self.conv3(self.conv2(self.conv1(x))))


class Block3(nn.Module):
    """Block 3 (spec 3.2, rows 11-13): conv 3x3 -> separable 3x3 -> conv 3x3, 78 channels, then the end."""

    def __init__(self, in_channels: int = WIDTHS[1], width: int = WIDTHS[2]) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(in_channels, width)
        self.conv2 = ConvBNReLU(width, width, separable=True)
        self.conv3 = nn.Conv2d(width, width, 3, padding=1)
        self.end = BlockEnd(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.end(self.conv3(self.conv2(self.conv1(x))))


class GroupAttentionBlock(nn.Module):
    """Blocks 2 and 4 (spec 3.2, rows 7-10 and 14-17): two_path -> MassAtt map * features -> conv 1x1
    -> end. Without MassAtt the two_path output goes straight to the 1x1 conv (spec section 8)."""

    def __init__(self, in_channels: int, filters: int, *, mass_att: bool = True, shuffle: bool = True,
                 dilation: int = 2) -> None:
        super().__init__()
        self.two_path = TwoPath(in_channels, filters, shuffle=shuffle, dilation=dilation)
        self.mass_att = MassAtt(filters) if mass_att else None
        self.conv = nn.Conv2d(filters, filters, 1)
        self.end = BlockEnd(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.two_path(x)
        if self.mass_att is not None:
            x = self.mass_att(x) * x
        return self.end(self.conv(x))


class LANMSFF(nn.Module):
    """The LANMSFF model (spec section 3): ``N x in_chans x H x W`` (H, W divisible by 32; 64 in the paper)
    to ``N x num_classes`` logits.

    The fused vector is GAP(PWFS(F1)), GAP(PWFS(F2)), GAP(PWFS(F3)) and GAP(F4), concatenated (156-d);
    F1-F3 are the post-dropout block outputs that also feed the next block (spec 3.5)."""

    def __init__(self, num_classes: int = 7, *, in_chans: int = 1, mass_att: bool = True, pwfs: bool = True,
                 channel_shuffle: bool = True, multi_scale_fusion: bool = True, dilation: bool = True) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.multi_scale_fusion = multi_scale_fusion
        l_dilation = 2 if dilation else 1
        c1, c2, c3, c4 = WIDTHS
        self.block1 = Block1(in_chans, c1)
        self.block2 = GroupAttentionBlock(c1, c2, mass_att=mass_att, shuffle=channel_shuffle,
                                          dilation=l_dilation)
        self.block3 = Block3(c2, c3)
        self.block4 = GroupAttentionBlock(c3, c4, mass_att=mass_att, shuffle=channel_shuffle,
                                          dilation=l_dilation)
        self.pwfs: nn.Module = PWFS() if pwfs else nn.Identity()
        if multi_scale_fusion:
            scale = 3 if pwfs else 1
            features = (c1 + c2 + c3) // scale + c4
        else:
            features = c4
        self.num_features = features
        self.head = nn.Linear(features, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras initialisers (spec section 4, item 6): he_uniform conv kernels, glorot_uniform for Linear
        and transposed convs, zero biases, BN at gamma 1 and beta 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # Keras reads a depthwise kernel (kh, kw, C, 1) with fan_in = kh * kw * C, where torch's
                # (C, 1, kh, kw) gives kh * kw; use the Keras fan-in so the bounds match.
                kh, kw = module.kernel_size
                fan_in = kh * kw * module.in_channels
                bound = math.sqrt(6.0 / fan_in)
                nn.init.uniform_(module.weight, -bound, bound)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.Linear, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ProfileError`` unless ``x`` is N x in_chans x H x W with H and W divisible by 32."""
        shape = tuple(x.shape)
        if (len(shape) != 4 or shape[1] != self.in_chans
                or shape[2] % SIDE_MULTIPLE or shape[3] % SIDE_MULTIPLE or min(shape[2:]) == 0):
            raise ProfileError(
                f"LANMSFF needs an input of N x {self.in_chans}x64x64 (in_chans={self.in_chans}; any side "
                f"divisible by {SIDE_MULTIPLE} also works); got {shape}. Resize the images or set in_chans"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The fused feature vector (N x ``num_features``) that the head classifies."""
        self.check_input(x)
        f1 = self.block1(x)
        f2 = self.block2(f1)
        f3 = self.block3(f2)
        f4 = self.block4(f3)
        if not self.multi_scale_fusion:
            return f4.mean(dim=(2, 3))
        maps = (self.pwfs(f1), self.pwfs(f2), self.pwfs(f3), f4)
        return torch.cat([m.mean(dim=(2, 3)) for m in maps], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


LANMSFF_SPEC = ArchitectureSpec(
    input_size=(1, 64, 64),
    # The code has no normalisation; spec section 8 proposes scaling grayscale pixels to [0, 1].
    mean=(0.0,),
    std=(1.0,),
    num_classes=7,
    paper=(
        "A. Ezati, M. Dezyani, R. Rana, R. Rajabi, A. Ayatollahi. A Lightweight Attention-based Deep Network "
        "via Multi-Scale Feature Fusion for Multi-View Facial Expression Recognition. arXiv:2403.14318 (2024)"
    ),
    reference_code="github.com/AE-1129/LANMSFF @ 6c8d37d",
    recipe=Recipe(
        optimizer="adam",
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-7,
        weight_decay=0.0,
        # Keras's patience=9 cuts the rate after 9 epochs without improvement; torch's ReduceLROnPlateau
        # (whose parameters the contract uses) cuts after patience + 1, hence 8. An improvement is Keras's default
        # min_delta=1e-4, which is absolute (val_loss < best - 1e-4); torch's default threshold is relative
        # (val_loss < best * (1 - 1e-4)), hence threshold_mode="abs".
        schedule=Schedule("reduce_on_plateau", {"factor": 0.1, "patience": 8, "threshold": 1e-4,
                                                "threshold_mode": "abs", "monitor": "val_loss"}),
        epochs=100,
        batch_size=32,
        loss="cross_entropy",
        early_stopping=EarlyStopping(monitor="val_loss", patience=14, min_delta=0.0, restore_best=False),
        augmentation_mode="offline",
        augmentation=(
            Augment("original"),
            Augment("hflip"),
            Augment("rotate_zoom", {"max_degrees": 15, "resize": 72, "crop": 64, "crop_mode": "center"}),
            Augment("resize_crop", {"resize": 72, "crop": 64, "crop_mode": "random"}),
        ),
        source="official code AE-1129/LANMSFF @ 6c8d37d: model.ipynb (compile, fit, callbacks) and "
               "data_augmentation.ipynb (offline 4x); spec lanmsff.md section 5",
    ),
)


@register_architecture("lanmsff", spec=LANMSFF_SPEC)
def lanmsff(num_classes: int, *, in_chans: Literal[1, 3] = 1, mass_att: bool = True, pwfs: bool = True,
            channel_shuffle: bool = True, multi_scale_fusion: bool = True, dilation: bool = True) -> LANMSFF:
    """LANMSFF (Ezati et al., arXiv:2403.14318): a 0.36M-parameter CNN with MassAtt, PWFS and multi-scale fusion.

    Variant options (spec section 8 ablations): ``mass_att`` (off: no attention), ``pwfs`` (off: identity,
    300-d fusion), ``channel_shuffle`` (off: plain split), ``multi_scale_fusion`` (off: GAP(F4) only, 84-d),
    ``dilation`` (off: L-paths use dilation 1), ``in_chans`` (1 grayscale as in the paper, or 3)."""
    return LANMSFF(num_classes, in_chans=in_chans, mass_att=mass_att, pwfs=pwfs, channel_shuffle=channel_shuffle,
                   multi_scale_fusion=multi_scale_fusion, dilation=dilation)
