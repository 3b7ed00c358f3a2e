"""Any timm model as a baseline: the architecture family ``timm/<model>``.

The spec comes from the model's timm pretrained config (input size, mean, std). The recipe is fbench's
baseline recipe, not a paper's: AdamW, cosine schedule, label smoothing and horizontal flips, the same for every
timm model so that baselines are comparable. Pretrained weights load only from a local file
(``pretrained_file=PATH``); nothing is downloaded.
"""

from __future__ import annotations

import fnmatch
import functools
from pathlib import Path
from typing import Any

import timm
import torch.nn as nn

from fbench.contract import BASELINE_RECIPE, Architecture, ArchitectureSpec
from fbench.errors import FbenchError, UnknownNameError, VariantError, close_matches


@functools.lru_cache(maxsize=1)
def _all_model_names() -> tuple[str, ...]:
    return tuple(timm.list_models())


def _create_model(model_name: str, num_classes: int, in_chans: int, img_size: int | None,
                  pretrained_file: str | None, drop_rate: float, drop_path_rate: float | None) -> nn.Module:
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_chans, "drop_rate": drop_rate}
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    if pretrained_file is not None:
        path = Path(pretrained_file).expanduser()
        if not path.is_file():
            raise FbenchError(
                f"timm/{model_name}: pretrained_file {str(path)!r} does not exist. Give the path of a local "
                "checkpoint (nothing is downloaded), or leave pretrained_file unset to train from scratch"
            )
        # 'source': 'timm' makes timm take the file even for configs that name a hub.
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path), "source": "timm"})
    try:
        if img_size is not None:
            try:
                return timm.create_model(model_name, img_size=img_size, **kwargs)
            except TypeError as error:
                if "img_size" not in str(error):
                    raise
                # Convolutional models take any input size and have no img_size argument.
        return timm.create_model(model_name, **kwargs)
    except Exception as error:  # torch's weights-only unpickler raises anything (IndexError, UnpicklingError...)
        if pretrained_file is None or isinstance(error, FbenchError):
            raise
        reason = " ".join(str(error).split())[:300]
        raise FbenchError(
            f"timm/{model_name}: pretrained_file {pretrained_file!r} could not be loaded as a checkpoint of "
            f"this model ({type(error).__name__}: {reason}). Give a state dict saved with "
            "torch.save(model.state_dict(), PATH), or leave pretrained_file unset to train from scratch"
        ) from error


class TimmFamily:
    """Resolves ``timm/<model>`` names to architectures."""

    description = "any timm model as a baseline (timm/<model>, e.g. timm/resnet18)"

    def get(self, member: str) -> Architecture:
        return _architecture(member)

    def members(self, pattern: str | None = None) -> list[str]:
        names = _all_model_names()
        if pattern:
            names = tuple(n for n in names if fnmatch.fnmatch(n, pattern))
        return [f"timm/{name}" for name in names]

    def suggest(self, member: str) -> list[str]:
        return [f"timm/{m}" for m in close_matches(member, _all_model_names())]


@functools.cache
def _architecture(model_name: str) -> Architecture:
    if not timm.is_model(model_name):
        suggestions = TimmFamily().suggest(model_name)
        hint = f" Did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        raise UnknownNameError(
            f"unknown timm model {model_name!r}.{hint} See `fbench list architectures 'timm/*{model_name[:4]}*'`"
        )
    config = timm.models.get_pretrained_cfg(model_name)
    input_size = (3, 224, 224)
    if config is not None:
        channels, height, width = config.input_size
        input_size = (channels, height, width)
    mean = tuple(config.mean) if config is not None else (0.5, 0.5, 0.5)
    std = tuple(config.std) if config is not None else (0.5, 0.5, 0.5)
    spec = ArchitectureSpec(
        input_size=input_size,
        mean=mean,
        std=std,
        recipe=BASELINE_RECIPE,
        num_classes=7,
        paper=f"timm model {model_name}",
        reference_code="github.com/huggingface/pytorch-image-models",
    )

    def factory(num_classes: int, *, in_chans: int = 3, img_size: int | None = None,
                pretrained_file: str | None = None, drop_rate: float = 0.0,
                drop_path_rate: float | None = None) -> nn.Module:
        if in_chans < 1:
            raise VariantError(f"timm/{model_name}: in_chans must be at least 1 (got {in_chans})")
        return _create_model(model_name, num_classes, in_chans, img_size, pretrained_file, drop_rate,
                             drop_path_rate)

    factory.__module__ = __name__
    factory.__qualname__ = f"timm_factory[{model_name}]"
    return Architecture.from_factory(
        f"timm/{model_name}", factory, spec, description=f"timm model {model_name} (baseline)"
    )
