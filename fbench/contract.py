"""The architecture contract: what every registered architecture provides.

An architecture is a factory ``factory(num_classes, *, option=default, ...) -> nn.Module`` plus a spec that
travels with it (input size, normalisation, default label count and the paper's training recipe), in the way
timm keeps a pretrained config beside each model. The factory's keyword-only parameters are the architecture's
variants (ablation switches): their annotations and defaults declare them, so the signature is the one place
where a variant is declared, typed and defaulted.

The model maps a float batch ``N x C x H x W`` to logits ``N x num_classes``. A model trained with several
heads implements ``training_loss(images, targets, criterion) -> (loss, logits)``; ``compute_loss`` calls it, so
the engine has no special cases. Likewise a model that changes its own state between epochs (SCAN-CCI's released
loop keeps BatchNorm in eval mode after the first epoch) implements ``train_epoch_start(epoch)``, which the engine
calls through ``start_training_epoch`` after putting the model in training mode at the start of each epoch.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from fbench.errors import PluginError, VariantError

OptionValue = bool | int | float | str | None

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "reduce_on_plateau", "exponential", "cosine", "step")
SAMPLERS = ("shuffle", "class_balanced")
LOSSES = ("cross_entropy",)


@dataclass(frozen=True)
class Schedule:
    """Learning-rate schedule. ``params`` are those of the matching torch scheduler."""

    kind: str = "constant"
    params: Mapping[str, Any] = field(default_factory=dict)
    step_per: Literal["epoch", "batch"] = "epoch"

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise PluginError(f"unknown schedule kind {self.kind!r}; use one of {', '.join(SCHEDULES)}")


@dataclass(frozen=True)
class EarlyStopping:
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    patience: int = 10
    min_delta: float = 0.0
    restore_best: bool = False


@dataclass(frozen=True)
class Augment:
    """One augmentation step, by name, with its parameters (applied on the device by the data layer)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A training recipe, as the paper (or, for baselines, fbench) specifies it. Suites may override fields."""

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    # Learning rates for parameter groups, by parameter-name prefix (the rest use ``lr``).
    lr_groups: Mapping[str, float] = field(default_factory=dict)
    schedule: Schedule = field(default_factory=Schedule)
    epochs: int = 100
    batch_size: int = 32
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    early_stopping: EarlyStopping | None = None
    augmentation: tuple[Augment, ...] = ()
    # "offline" multiplies the training set before training (LANMSFF's 4x); "online" draws per batch.
    augmentation_mode: Literal["online", "offline"] = "online"
    sampler: str = "shuffle"
    source: str = ""

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise PluginError(f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if self.sampler not in SAMPLERS:
            raise PluginError(f"unknown sampler {self.sampler!r}; use one of {', '.join(SAMPLERS)}")
        if self.loss not in LOSSES:
            raise PluginError(f"unknown loss {self.loss!r}; use one of {', '.join(LOSSES)}")
        if self.lr <= 0 or self.epochs < 1 or self.batch_size < 1:
            raise PluginError("a recipe needs lr > 0, epochs >= 1 and batch_size >= 1")


@dataclass(frozen=True)
class ArchitectureSpec:
    """What an architecture needs and how its paper trains it."""

    input_size: tuple[int, int, int]  # (channels, height, width)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    recipe: Recipe
    num_classes: int = 7
    paper: str = ""
    reference_code: str = ""
    # Option name -> how a run departs from the paper's setting when that option is left unset (None), e.g.
    # SCAN-CCI's backbone_weights: "trunk from scratch: not the paper's setting". Shown in the terminal and reports.
    unset_option_notes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        channels = self.input_size[0]
        if len(self.mean) != channels or len(self.std) != channels:
            raise PluginError(
                f"spec mean/std have {len(self.mean)}/{len(self.std)} values for {channels} input channels"
            )

    @property
    def channels(self) -> int:
        return self.input_size[0]

    def with_input(self, channels: int | None = None, image_size: int | tuple[int, int] | None = None
                   ) -> ArchitectureSpec:
        """The spec for another channel count or image size; mean/std follow the channel count."""
        c, h, w = self.input_size
        mean, std = self.mean, self.std
        if channels is not None and channels != c:
            mean, std = _adapt_stats(mean, channels), _adapt_stats(std, channels)
            c = channels
        if image_size is not None:
            h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        return dataclasses.replace(self, input_size=(c, h, w), mean=mean, std=std)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _adapt_stats(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    if channels == 1:
        return (sum(values) / len(values),)
    if len(values) == 1:
        return values * channels
    return tuple(values[i % len(values)] for i in range(channels))


# The defaults of an architecture registered without a spec (``@register_architecture("name")``), as timm's
# ``@register_model`` needs no config: RGB 224 x 224 input with ImageNet's normalisation and fbench's baseline
# recipe (the one every timm baseline trains with, so that baselines are comparable).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BASELINE_RECIPE = Recipe(
    optimizer="adamw",
    lr=1e-3,
    weight_decay=0.05,
    schedule=Schedule("cosine", {"warmup_epochs": 2}),
    epochs=60,
    batch_size=64,
    loss="cross_entropy",
    label_smoothing=0.1,
    augmentation=(Augment("hflip"), Augment("random_resized_crop", {"scale": (0.8, 1.0)})),
    augmentation_mode="online",
    source="fbench baseline recipe for timm models (not from a paper)",
)
DEFAULT_SPEC = ArchitectureSpec(
    input_size=(3, 224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD, recipe=BASELINE_RECIPE, num_classes=7,
    paper="no spec given: fbench's defaults (3x224x224, ImageNet mean/std, baseline recipe)",
)


@dataclass(frozen=True)
class VariantOption:
    """One declared variant option: a keyword-only parameter of the factory."""

    name: str
    kind: type  # bool, int, float or str
    default: OptionValue
    choices: tuple[OptionValue, ...] | None = None
    nullable: bool = False

    def describe(self) -> str:
        kind = "|".join(map(str, self.choices)) if self.choices else self.kind.__name__
        if self.nullable:
            kind += "|none"
        return f"{self.name}: {kind} = {self.default}"

    def parse(self, raw: object) -> OptionValue:
        """Coerce a value (a string from the command line or a YAML scalar) to this option's type."""
        value = self._coerce(raw)
        if self.choices is not None and value not in self.choices:
            raise VariantError(
                f"variant option {self.name}={raw!r} is not one of: {', '.join(map(str, self.choices))}"
            )
        return value

    def _coerce(self, raw: object) -> OptionValue:
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null")):
            if self.nullable:
                return None
            raise VariantError(f"variant option {self.name} cannot be empty; give a {self.kind.__name__}")
        if self.kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise VariantError(f"variant option {self.name}={raw!r} is not a boolean; use true or false")
        try:
            if self.kind is int:
                if isinstance(raw, float) and not raw.is_integer():
                    raise ValueError
                return int(raw)  # type: ignore[call-overload]
            if self.kind is float:
                return float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise VariantError(
                f"variant option {self.name}={raw!r} is not a valid {self.kind.__name__}"
            ) from None
        return str(raw)


def options_from_signature(factory: Callable[..., Any]) -> tuple[VariantOption, ...]:
    """Read the variant options from a factory's keyword-only parameters."""
    signature = inspect.signature(factory)
    params = list(signature.parameters.values())
    where = f"{factory.__module__}.{factory.__qualname__}"
    if not params or params[0].name != "num_classes":
        raise PluginError(f"architecture factory {where} must take num_classes as its first parameter")
    hints = typing.get_type_hints(factory)
    options = []
    for param in params[1:]:
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise PluginError(
                f"architecture factory {where}: parameter {param.name!r} must be keyword-only "
                "(put it after a bare '*'), so that it is a declared variant option"
            )
        if param.default is inspect.Parameter.empty:
            raise PluginError(f"architecture factory {where}: variant option {param.name!r} needs a default")
        options.append(_option_from_annotation(param.name, hints.get(param.name), param.default, where))
    return tuple(options)


def _option_from_annotation(name: str, annotation: Any, default: OptionValue, where: str) -> VariantOption:
    nullable = False
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        nullable = True
        rest = [a for a in args if a is not type(None)]
        annotation = rest[0] if len(rest) == 1 else None
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        kinds = {type(a) for a in args}
        if len(kinds) != 1 or not kinds <= {bool, int, float, str}:
            raise PluginError(f"{where}: Literal options must hold values of one simple type ({name})")
        return VariantOption(name, kinds.pop(), default, tuple(args), nullable)
    if annotation in (bool, int, float, str):
        return VariantOption(name, annotation, default, None, nullable)
    raise PluginError(
        f"{where}: variant option {name!r} must be annotated bool, int, float, str, a Literal or Optional of "
        f"those (got {annotation!r})"
    )


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: factory, spec and declared variant options."""

    name: str
    factory: Callable[..., Any]
    spec: ArchitectureSpec
    options: tuple[VariantOption, ...]
    description: str = ""

    @classmethod
    def from_factory(cls, name: str, factory: Callable[..., Any], spec: ArchitectureSpec,
                     description: str = "") -> Architecture:
        if not isinstance(spec, ArchitectureSpec):
            raise PluginError(f"architecture {name!r}: spec must be an fbench.contract.ArchitectureSpec")
        doc = description or (inspect.getdoc(factory) or "").split("\n\n")[0].replace("\n", " ")
        return cls(name, factory, spec, options_from_signature(factory), doc)

    @property
    def source(self) -> str:
        return f"{self.factory.__module__}:{self.factory.__qualname__}"

    def resolve_options(self, raw: Mapping[str, object] | None = None) -> dict[str, OptionValue]:
        """Validate given options and fill in defaults; an unknown option lists the valid ones."""
        known = {option.name: option for option in self.options}
        resolved: dict[str, OptionValue] = {name: option.default for name, option in known.items()}
        for key, value in (raw or {}).items():
            if key not in known:
                valid = "; ".join(o.describe() for o in self.options) or "none"
                raise VariantError(
                    f"architecture {self.name!r} has no variant option {key!r}. Valid options: {valid}"
                )
            try:
                resolved[key] = known[key].parse(value)
            except VariantError as error:
                raise VariantError(f"architecture {self.name!r}: {error}") from None
        return resolved

    def resolve_spec(self, options: Mapping[str, OptionValue] | None = None) -> ArchitectureSpec:
        """The spec under the given options: the conventional options ``in_chans`` and ``img_size``
        change the input the model expects."""
        resolved = self.resolve_options(options)
        channels = resolved.get("in_chans")
        image_size = resolved.get("img_size")
        return self.spec.with_input(
            channels=int(channels) if channels is not None else None,
            image_size=int(image_size) if image_size is not None else None,
        )

    def setting_notes(self, options: Mapping[str, object] | None = None) -> list[str]:
        """How a model built with ``options`` departs from its paper's setting: the spec's ``unset_option_notes``
        of the options left unset (None)."""
        resolved = self.resolve_options(options)
        return [note for name, note in self.spec.unset_option_notes.items() if resolved.get(name) is None]

    def build(self, num_classes: int | None = None, **options: object) -> Any:
        """Build the model: ``num_classes`` defaults to the spec's label count."""
        resolved = self.resolve_options(options)
        classes = self.spec.num_classes if num_classes is None else int(num_classes)
        if classes < 2:
            raise VariantError(f"architecture {self.name!r}: num_classes must be at least 2 (got {classes})")
        return self.factory(classes, **resolved)

    __call__ = build


@runtime_checkable
class HasTrainingLoss(Protocol):
    """A model with several heads that defines its own training loss."""

    def training_loss(self, images: Any, targets: Any, criterion: Callable[[Any, Any], Any]
                      ) -> tuple[Any, Any]: ...


@runtime_checkable
class HasEpochStart(Protocol):
    """A model that changes its own state at the start of each training epoch (e.g. which layers train)."""

    def train_epoch_start(self, epoch: int) -> None: ...


def start_training_epoch(model: Any, epoch: int) -> None:
    """Call the model's ``train_epoch_start(epoch)`` hook, if it has one (``epoch`` counts from 1); the engine
    calls this after ``model.train()`` at the start of every epoch."""
    if isinstance(model, HasEpochStart):
        model.train_epoch_start(epoch)


def compute_loss(model: Any, images: Any, targets: Any, criterion: Callable[[Any, Any], Any]
                 ) -> tuple[Any, Any]:
    """The training loss and the logits used for predictions, for any model under the contract."""
    if isinstance(model, HasTrainingLoss):
        return model.training_loss(images, targets, criterion)
    logits = model(images)
    return criterion(logits, targets), logits
