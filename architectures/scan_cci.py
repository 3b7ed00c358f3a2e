"""SCAN-CCI (Gera & Balasubramanian, Pattern Recognition Letters 2021): spatio-channel attention + CCI.

Implements ``shared/specs/scan_cci.md`` (sections "Architecture (as released)" and "Training"): a
ResNet-50 trunk cut after layer3, an attention branch of SCAN blocks on 25 local patches of layer2 plus the
whole map, and a complementary-context (CCI) branch of ECA + four 7x7 regions of layer3 with one shared MLP.
Written from the spec; the official code (github.com/1980x/SCAN-CCI-FER) was only used as a reference.

Where fbench departs from the released setting, and the switches that restore it:
- the trunk starts from random weights unless ``backbone_weights`` names a local checkpoint (the paper fine-tunes a
  VGGFace2 ResNet-50, which cannot be downloaded here); runs say "trunk from scratch: not the paper's setting";
- ``bn_first_epoch_only`` (default off) reproduces the released loop, which never calls ``.train()`` after the
  first validation, so BatchNorm runs in eval mode (running statistics, frozen) from the second epoch on;
- the released scripts pick the best epoch on the test set: that is a suite's ``leaky: true`` protocol, and the
  AffectNet script's cap of 20,000 training images per class is the ``official`` protocol's
  ``max_train_per_class`` (``suites/scan_cci-faithful.yaml`` turns all three on).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from fbench.contract import ArchitectureSpec, Augment, Recipe, Schedule
from fbench.errors import FbenchError, VariantError
from fbench.registry import register_architecture

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
FROM_SCRATCH = ("trunk from scratch: not the paper's setting (the paper fine-tunes a face-pretrained ResNet-50; "
                "give options.backbone_weights=PATH, a local torchvision-style ResNet-50 state dict: see README, "
                "Variants)")

PatchLayout = Literal["faithful", "fixed"]

INPUT_SIZE = (3, 224, 224)
MAP_SIZE = 28  # side of the layer2 map at 224x224 input; the patch layout is defined on it
NUM_PATCHES = 25
ATTENTION_WEIGHT = 0.2
REGION_WEIGHT = 0.8

TRUNK_LAYERS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")
IGNORED_PREFIXES = ("layer4.", "fc.")


# -- backbone ---------------------------------------------------------------------------------------------

class ResNet50Trunk(nn.Module):
    """torchvision ResNet-50 up to layer3 (spec: "Backbone"); returns (f2, f3) = (layer2, layer3) outputs.

    Module names match torchvision's, so a ResNet-50 state dict loads without renaming."""

    # set from torchvision's ResNet-50 in __init__ (TRUNK_LAYERS)
    conv1: nn.Conv2d
    bn1: nn.BatchNorm2d
    relu: nn.ReLU
    maxpool: nn.MaxPool2d
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        resnet = torchvision.models.resnet50(weights=None)
        for name in TRUNK_LAYERS:
            setattr(self, name, getattr(resnet, name))
        if weights_path is not None:
            load_trunk_weights(self, weights_path)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f2 = self.layer2(self.layer1(x))
        return f2, self.layer3(f2)


def _format_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:5])
    return shown + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")


def load_trunk_weights(trunk: ResNet50Trunk, path: str) -> None:
    """Copy a torchvision-style ResNet-50 state dict into ``trunk`` (layer4/fc keys are ignored)."""
    expected = "a torchvision-style ResNet-50 state dict (conv1., bn1., layer1.-layer3. keys)"
    if not os.path.isfile(path):
        raise FbenchError(f"backbone_weights {path!r}: no such file; give the path of {expected}")
    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for unreadable or unsafe pickles
        raise FbenchError(f"backbone_weights {path!r}: cannot be read by torch.load ({error}); "
                          f"expected {expected}") from None
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise FbenchError(f"backbone_weights {path!r}: holds a {type(loaded).__name__}, not a dict of "
                          f"tensors; expected {expected}")

    state = {}
    for key, value in loaded.items():
        key = key.removeprefix("module.")
        if not key.startswith(IGNORED_PREFIXES):
            state[key] = value
    own = trunk.state_dict()
    # num_batches_tracked only drives BN momentum=None; checkpoints converted from other frameworks lack it.
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                  for k in state if k in own and state[k].shape != own[k].shape]
    problems = [f"{label} keys: {_format_keys(keys)}" for label, keys in
                (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", mismatched)) if keys]
    if problems:
        raise FbenchError(f"backbone_weights {path!r} does not fit the ResNet-50 trunk: "
                          f"{'; '.join(problems)}. Expected {expected}")
    trunk.load_state_dict(state, strict=False)


# -- attention (SCAN) branch ------------------------------------------------------------------------------

class SCANBlock(nn.Module):
    """Spatio-channel attention (spec: "SCAN block"): X * Sigmoid(BN(PReLU(Conv3x3(X)))), no residual."""

    def __init__(self, channels: int = 512) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.prelu = nn.PReLU(channels)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.bn(self.prelu(self.conv(x))))


def extract_patches(f2: Tensor, layout: PatchLayout = "faithful") -> list[Tensor]:
    """The 25 local patches of a N x C x 28 x 28 map, in the order that indexes the local SCAN blocks.

    16 of 6x6 (4x4 grid, row-major), 4 of 6x4 (right strip), 4 of 4x6 (bottom strip), 1 of 4x4 (corner).
    ``faithful`` reproduces the released code's bottom strip: patch j is row 24 + j folded into 4x6."""
    if f2.shape[-2:] != (MAP_SIZE, MAP_SIZE):
        raise VariantError(f"SCAN-CCI patches are defined on a {MAP_SIZE}x{MAP_SIZE} map, got "
                           f"{tuple(f2.shape[-2:])}")
    grid = [f2[:, :, 6 * i:6 * i + 6, 6 * j:6 * j + 6] for i in range(4) for j in range(4)]
    right = [f2[:, :, 6 * i:6 * i + 6, 24:] for i in range(4)]
    if layout == "faithful":
        bottom = [f2[:, :, 24 + j, :24].reshape(f2.shape[0], f2.shape[1], 4, 6) for j in range(4)]
    elif layout == "fixed":
        bottom = [f2[:, :, 24:, 6 * j:6 * j + 6] for j in range(4)]
    else:
        raise VariantError(f"patch_layout={layout!r} is not one of: faithful, fixed")
    return grid + right + bottom + [f2[:, :, 24:, 24:]]


class AttentionBranch(nn.Module):
    """Spec "Attention branch": max over patches of GAP(SCAN_k(patch)), GAP(SCAN_g(map)), L2-norm, Linear."""

    def __init__(self, num_classes: int, channels: int = 512, *, shared: bool = False,
                 layout: PatchLayout = "faithful", local: bool = True, global_: bool = True) -> None:
        super().__init__()
        if not (local or global_):
            raise VariantError("the attention branch needs its local or its global path")
        self.layout = layout
        count = 1 if shared else NUM_PATCHES
        self.local_scans = nn.ModuleList(SCANBlock(channels) for _ in range(count)) if local else None
        self.global_scan = SCANBlock(channels) if global_ else None
        self.fc = nn.Linear(channels * (int(local) + int(global_)), num_classes)

    def forward(self, f2: Tensor) -> Tensor:
        features = []
        if self.local_scans is not None:
            patches = extract_patches(f2, self.layout)
            scans = self.local_scans
            pooled = [scans[k % len(scans)](patch).mean(dim=(2, 3)) for k, patch in enumerate(patches)]
            features.append(torch.stack(pooled, dim=1).amax(dim=1))
        if self.global_scan is not None:
            features.append(self.global_scan(f2).mean(dim=(2, 3)))
        return self.fc(F.normalize(torch.cat(features, dim=1), p=2, dim=1))


# -- complementary context (CCI) branch -------------------------------------------------------------------

class ECA(nn.Module):
    """Efficient channel attention (spec "CCI branch" step 1): x * sigmoid(Conv1d_k5(GAP(x))), no residual."""

    def __init__(self, kernel_size: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x.mean(dim=(2, 3)).unsqueeze(1))  # N x 1 x C: the conv runs across channels
        return x * torch.sigmoid(y).transpose(1, 2).unsqueeze(-1)


class CCIBranch(nn.Module):
    """Spec "CCI branch": optional ECA, then one shared MLP on GAP of the TL, TR, BL, BR quarters."""

    def __init__(self, num_classes: int, channels: int = 1024, hidden: int = 256, *, eca: bool = True) -> None:
        super().__init__()
        self.eca = ECA() if eca else None
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))

    def forward(self, f3: Tensor) -> list[Tensor]:
        if self.eca is not None:
            f3 = self.eca(f3)
        h, w = f3.shape[-2] // 2, f3.shape[-1] // 2
        regions = (f3[:, :, :h, :w], f3[:, :, :h, w:], f3[:, :, h:, :w], f3[:, :, h:, w:])
        return [self.mlp(region.mean(dim=(2, 3))) for region in regions]


# -- model ------------------------------------------------------------------------------------------------

class SCANCCI(nn.Module):
    """SCAN-CCI with ablation switches. ``forward`` returns the mean of the heads' logits (spec "Prediction").

    Heads, in order: the attention head (if present), then the CCI regions TL, TR, BL, BR (if present); with
    neither branch, one head GAP(layer3) -> Linear (the backbone-only baseline)."""

    def __init__(self, num_classes: int, *, shared_heads: bool = False, patch_layout: PatchLayout = "faithful",
                 scan_branch: bool = True, cci_branch: bool = True, global_scan: bool = True,
                 local_scan: bool = True, eca: bool = True, backbone_weights: str | None = None,
                 bn_first_epoch_only: bool = False) -> None:
        super().__init__()
        self.bn_first_epoch_only = bn_first_epoch_only
        if scan_branch and not (global_scan or local_scan):
            raise VariantError(
                "scan_cci: scan_branch=true with global_scan=false and local_scan=false leaves the attention "
                "branch empty; turn one of global_scan/local_scan on, or set scan_branch=false"
            )
        if patch_layout not in ("faithful", "fixed"):
            raise VariantError(f"scan_cci: patch_layout={patch_layout!r} is not one of: faithful, fixed")
        self.trunk = ResNet50Trunk(backbone_weights)
        self.attention = (AttentionBranch(num_classes, shared=shared_heads, layout=patch_layout,
                                          local=local_scan, global_=global_scan) if scan_branch else None)
        self.cci = CCIBranch(num_classes, eca=eca) if cci_branch else None
        self.baseline_fc = nn.Linear(1024, num_classes) if not (scan_branch or cci_branch) else None

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != INPUT_SIZE:
            raise VariantError(
                f"scan_cci expects N x 3 x 224 x 224 input (its patch layout is defined on the 28x28 layer2 "
                f"map), got {tuple(x.shape)}; resize the images to 224x224"
            )

    def forward_heads(self, x: Tensor) -> list[Tensor]:
        """The logits of every head (see the class docstring for the order)."""
        self._check_input(x)
        f2, f3 = self.trunk(x)
        heads = []
        if self.attention is not None:
            heads.append(self.attention(f2))
        if self.cci is not None:
            heads.extend(self.cci(f3))
        if self.baseline_fc is not None:
            heads.append(self.baseline_fc(f3.mean(dim=(2, 3))))
        return heads

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack(self.forward_heads(x)).mean(dim=0)

    def train_epoch_start(self, epoch: int) -> None:
        """The engine's per-epoch hook (``epoch`` from 1), called after ``.train()``: with ``bn_first_epoch_only``,
        every BatchNorm layer goes to eval mode from epoch 2 on (running statistics used and no longer updated;
        its affine weights still train), as in the released loop, which never calls ``.train()`` again after the
        first validation. SCAN-CCI has no dropout, so this is the whole of that loop's eval mode."""
        if self.bn_first_epoch_only and epoch > 1:
            for module in self.modules():
                if isinstance(module, BATCH_NORMS):
                    module.eval()

    def training_loss(self, images: Tensor, targets: Tensor, criterion: Callable[[Tensor, Tensor], Tensor]
                      ) -> tuple[Tensor, Tensor]:
        """Spec "Loss": 0.2 * attention + 0.8 * sum of the 4 region losses when both branches exist, else the
        plain sum over the heads present. Returns (loss, mean logits)."""
        heads = self.forward_heads(images)
        losses = [criterion(logits, targets) for logits in heads]
        if self.attention is not None and self.cci is not None:
            loss = ATTENTION_WEIGHT * losses[0] + REGION_WEIGHT * torch.stack(losses[1:]).sum()
        else:
            loss = torch.stack(losses).sum()
        return loss, torch.stack(heads).mean(dim=0)


SCAN_CCI_SPEC = ArchitectureSpec(
    input_size=INPUT_SIZE,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    num_classes=7,
    paper=("D. Gera, S. Balasubramanian, \"Landmark guidance independent spatio-channel attention and "
           "complementary context information based facial expression recognition\", Pattern Recognition "
           "Letters 145 (2021), doi:10.1016/j.patrec.2021.01.029; arXiv:2007.10298"),
    reference_code="github.com/1980x/SCAN-CCI-FER @ 8011a10",
    unset_option_notes={"backbone_weights": FROM_SCRATCH},
    recipe=Recipe(
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        weight_decay=1e-3,
        lr_groups={"trunk": 1e-4},
        schedule=Schedule("exponential", {"gamma": 0.95}),
        epochs=60,
        batch_size=64,
        loss="cross_entropy",
        augmentation=(
            Augment("hflip"),
            Augment("color_jitter", {"brightness": 0.4, "contrast": 0.3, "saturation": 0.25, "hue": 0.05}),
        ),
        augmentation_mode="online",
        sampler="class_balanced",
        source="SCAN-CCI-FER RAF-DB/FERPlus train scripts (AffectNet uses lr 0.001 for the branches)",
    ),
)


@register_architecture("scan_cci", spec=SCAN_CCI_SPEC)
def scan_cci(num_classes: int, *, shared_heads: bool = False, patch_layout: Literal["faithful", "fixed"] = "faithful",
             scan_branch: bool = True, cci_branch: bool = True, global_scan: bool = True, local_scan: bool = True,
             eca: bool = True, backbone_weights: str | None = None, bn_first_epoch_only: bool = False) -> SCANCCI:
    """SCAN-CCI: SCAN attention on layer2 patches + complementary context on layer3 regions (ResNet-50 trunk).

    Options: shared_heads (one local SCAN for all 25 patches), patch_layout (faithful reproduces the released
    bottom-strip bug), scan_branch/cci_branch (both off = layer3 GAP + Linear baseline), global_scan/local_scan,
    eca, backbone_weights (local torchvision-style ResNet-50 state dict; unset, the trunk trains from scratch,
    which is not the paper's setting), bn_first_epoch_only (the released loop's BatchNorm in eval mode after the
    first epoch). See specs/scan_cci.md."""
    return SCANCCI(num_classes, shared_heads=shared_heads, patch_layout=patch_layout, scan_branch=scan_branch,
                   cci_branch=cci_branch, global_scan=global_scan, local_scan=local_scan, eca=eca,
                   backbone_weights=backbone_weights, bn_first_epoch_only=bn_first_epoch_only)
