"""Training and evaluation throughput: the fbench engine against a raw loop and a conventional DataLoader pipeline.

For each model and input size, on the same images, batch size and device, in one process:

(a) engine      ``fbench.engine.train_model`` on ``TrainData``/``EvalData`` built as a suite cell builds them
                (decoded uint8 tensors on the device, the architecture's recipe with its on-device BatchAugment,
                ``compute_loss``), and ``fbench.engine.predict_logits`` on host uint8 images, as the runner calls
                it. Its training rate is the epoch's batches as the engine times them (``train_seconds`` of its
                history). Recipes that monitor validation (LANMSFF) get a one-batch validation split; that pass
                and the once-per-cell offline expansion are work the other two do not do, reported apart
                (``val_seconds``, ``setup_seconds``, and ``call_images_per_s`` for the whole call).
(b) raw         pre-normalised float tensors already on the device; model, optimiser, loss; no augmentation.
(c) dataloader  ``torchvision.datasets.ImageFolder`` over the same images written as JPEGs, PIL transforms in
                the recipe's spirit, ``DataLoader(num_workers=W, pin_memory on CUDA)``; the time spent in
                ``next(iterator)`` is the data-wait share.

On CUDA all three use bf16 autocast and channels_last, as the engine does, so the ratios measure the data path.
Each method is warmed up, then timed over a fixed number of steps with the device synchronised at both ends;
``--repeats`` rounds interleave the methods, each round in another order, and the median round is reported.
On a CPU the default is ``--preset cpu``: every built-in architecture and three timm families at CPU sizes,
three rounds, about 4 minutes on 2 cores.

    python benchmarks/throughput.py --device cuda --out benchmarks/results/throughput-h100.json
    python benchmarks/throughput.py --device cpu --out benchmarks/results/throughput-cpu.json
    python benchmarks/compare_throughput.py benchmarks/results/throughput-cpu.json new.json
    python benchmarks/throughput.py --quick --device cpu --models lanmsff --out /tmp/tp.json
"""

from __future__ import annotations

import argparse
import gc
import math
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # puts the repository root on sys.path
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T
from torchvision.datasets import ImageFolder

from fbench.contract import Architecture, ArchitectureSpec, Recipe, compute_loss
from fbench.data.transforms import BatchAugment, eval_transform
from fbench.engine import EvalData, TrainData, TrainResult, TrainSettings, predict_logits, train_model
from fbench.engine.optim import build_optimizer
from fbench.engine.runtime import batch_format, use_amp, use_channels_last
from fbench.engine.sampling import class_balanced_weights, epoch_order, stream_generator
from fbench.registry import get_architecture

DEFAULT_MODELS = ("lanmsff@64", "timm/resnet18@112+224", "scan_cci@224")
# --preset cpu (the default on a CPU): every built-in architecture and three timm families with different operator
# mixes (plain convolutions, depthwise + squeeze-excitation, LayerNorm), each with the batch and timed steps that
# keep one method's turn at a few seconds on 2 cores; the whole run takes about 4 minutes there.
CPU_PRESET = {  # case -> (batch size or None for the recipe's, timed steps)
    "lanmsff@64": (None, 6),
    "scan_cci@224": (8, 2),
    "timm/resnet18@64": (None, 6),
    "timm/mobilenetv3_small_100@64": (None, 8),
    "timm/convnext_atto@64": (None, 6),
}
CPU_PRESET_WARMUP, CPU_PRESET_REPEATS = 2, 3
# --quick: small inputs where a model takes any size (scan_cci takes 224 only).
QUICK_SIZES = {"lanmsff": 32, "timm/resnet18": 32}
QUICK_MODELS = ("lanmsff", "timm/resnet18", "scan_cci")
METHODS = ("engine", "raw", "dataloader")
PRESETS = ("cpu", "gpu")


# ------------------------------------------------------------------------------------------------ setup


@dataclass(frozen=True)
class Case:
    model: str
    size: int
    batch_size: int | None = None  # a preset's own batch size and timed steps, where --batch-size/--steps are
    steps: int | None = None  # not given

    @property
    def label(self) -> str:
        return f"{self.model}@{self.size}"


def parse_cases(models: Sequence[str], sizes: Sequence[int] | None, quick: bool) -> list[Case]:
    """``name`` or ``name@S[+S...]`` entries -> cases. ``--sizes`` gives the sizes of entries without ``@``;
    without it they take the spec's size, or with ``--quick`` a small one where the model allows it."""
    cases: list[Case] = []
    for entry in models:
        name, _, given = entry.partition("@")
        if given:
            chosen = [int(s) for s in given.split("+")]
        elif sizes:
            chosen = list(sizes)
        elif quick and name in QUICK_SIZES:
            chosen = [QUICK_SIZES[name]]
        else:
            chosen = [get_architecture(name).spec.input_size[1]]
        cases.extend(Case(name, size) for size in dict.fromkeys(chosen))
    return cases


@dataclass
class Setup:
    """What the three methods share for one case: model factory, spec, recipe, images and settings."""

    case: Case
    architecture: Architecture
    spec: ArchitectureSpec
    recipe: Recipe
    images: torch.Tensor  # N x C x H x W uint8 on the host
    labels: torch.Tensor  # N int64 on the host
    batch_size: int
    eval_batch_size: int
    steps: int
    warmup: int
    device: torch.device
    workers: int
    data_source: str
    amp: bool = field(init=False)
    channels_last: bool = field(init=False)

    def __post_init__(self) -> None:
        self.amp = use_amp("auto", self.device)
        self.channels_last = use_channels_last(True, self.device)

    @property
    def expansion(self) -> int:
        """Rows per image after the recipe's offline augmentation (LANMSFF: 4)."""
        offline = self.recipe.augmentation_mode == "offline" and self.recipe.augmentation
        return len(self.recipe.augmentation) if offline else 1

    def model(self) -> nn.Module:
        """A fresh model, the same initial weights for every method, on the device in the engine's format."""
        torch.manual_seed(0)
        model = self.architecture.build(_common.NUM_CLASSES).to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def autocast(self) -> Any:
        if self.amp:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return torch.autocast(device_type=self.device.type, enabled=False)

    def criterion(self) -> nn.Module:
        return nn.CrossEntropyLoss(label_smoothing=self.recipe.label_smoothing)


def make_setup(case: Case, args: argparse.Namespace, device: torch.device) -> Setup:
    architecture = get_architecture(case.model)
    spec = architecture.resolve_spec({}).with_input(image_size=case.size)
    recipe = architecture.spec.recipe
    batch_size = args.batch_size or case.batch_size or recipe.batch_size
    steps = args.steps or case.steps or args.default_steps
    n = steps * batch_size
    pixels, labels, source = _common.face_like_images(n, case.size, spec.channels, source=args.images,
                                                      pool=args.pool)
    return Setup(case, architecture, spec, recipe, _common.to_nchw(pixels), torch.from_numpy(labels), batch_size,
                 args.eval_batch_size or batch_size, steps, args.warmup, device, args.workers, source)


# ------------------------------------------------------------------------------------------ measurements


@dataclass
class Measure:
    """One method's timings for one case."""

    train_images: int = 0
    train_seconds: float = 0.0
    eval_images: int = 0
    eval_seconds: float = 0.0
    data_share: float | None = None  # train: data wait (c) or on-device batch preparation (a) / step time
    eval_data_share: float | None = None
    train_memory_mib: float | None = None
    eval_memory_mib: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def train_ips(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds else math.nan

    @property
    def eval_ips(self) -> float:
        return self.eval_images / self.eval_seconds if self.eval_seconds else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"train_images_per_s": _round(self.train_ips), "eval_images_per_s": _round(self.eval_ips),
                "train_images": self.train_images, "train_seconds": _round(self.train_seconds, 4),
                "eval_images": self.eval_images, "eval_seconds": _round(self.eval_seconds, 4),
                "data_share": _round(self.data_share, 4), "eval_data_share": _round(self.eval_data_share, 4),
                "train_memory_mib": self.train_memory_mib, "eval_memory_mib": self.eval_memory_mib, **self.extra}


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def _ids(n: int, prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(n))


def engine_splits(setup: Setup) -> tuple[TrainData, TrainData, EvalData | None]:
    """The engine's (timed training, warm-up training, validation) splits on the device: ``steps`` (``warmup``)
    batches after the recipe's offline expansion, and one validation batch where the recipe monitors validation
    (LANMSFF's early stopping and plateau schedule), so that it runs unchanged; else no validation split."""
    bs = setup.batch_size
    n_train = max(1, math.ceil(setup.steps * bs / setup.expansion))
    n_warm = max(1, math.ceil(setup.warmup * bs / setup.expansion))
    images, labels = setup.images.to(setup.device), setup.labels.to(setup.device)
    train = TrainData(images[:n_train], labels[:n_train], _ids(n_train, "t"))
    warm = TrainData(images[:n_warm], labels[:n_warm], _ids(n_warm, "w"))
    val = None
    if setup.recipe.early_stopping is not None or setup.recipe.schedule.kind == "reduce_on_plateau":
        n_val = min(bs, len(setup.images))
        val = EvalData(images[:n_val], labels[:n_val], _ids(n_val, "v"))
    return train, warm, val


def measure_engine(setup: Setup) -> Measure:
    """(a) ``train_model`` for one epoch of ``steps`` batches after a warm-up call; ``predict_logits``."""
    device = setup.device
    train, warm, val = engine_splits(setup)
    n_train = len(train)
    model = setup.model()

    def fit(data: TrainData) -> TrainResult:
        return train_model(model, data, val, TrainSettings(setup.recipe, setup.spec, device=device, seed=0,
                                                           epochs=1, eval_batch_size=setup.eval_batch_size))

    fit(warm)
    _common.reset_peak_memory(device)
    with _common.stopwatch(device) as call_time:
        trained = fit(train)
    # The training-step rate: the epoch's batches as the engine timed them. The recipe's validation pass and the
    # once-per-cell offline expansion are work the raw loop does not do; they are reported apart.
    (epoch,) = trained.history
    rows = n_train * setup.expansion
    result = Measure(train_images=rows, train_seconds=epoch["train_seconds"],
                     train_memory_mib=_common.peak_memory_mib(device))
    result.extra.update(call_images_per_s=_round(rows / call_time[0]), call_seconds=_round(call_time[0], 4),
                        val_seconds=_round(epoch["val_seconds"], 4), val_images=len(val) if val is not None else 0,
                        setup_seconds=_round(trained.setup_seconds, 4))
    prep_seconds = _engine_batch_prep_seconds(setup, train)
    result.data_share = min(1.0, prep_seconds / epoch["train_seconds"])

    # The runner passes the test images from the host cache; predict_logits moves each batch to the device.
    host_images = setup.images
    predict = lambda images: predict_logits(model, images, setup.spec, device=device,  # noqa: E731
                                            batch_size=setup.eval_batch_size, seed=0)
    predict(host_images[:setup.eval_batch_size])
    _common.reset_peak_memory(device)
    with _common.stopwatch(device) as eval_time:
        predict(host_images)
    result.eval_images, result.eval_seconds = len(host_images), eval_time[0]
    result.eval_memory_mib = _common.peak_memory_mib(device)
    if device.type == "cuda":
        resident = setup.images.to(device)
        with _common.stopwatch(device) as resident_time:
            predict(resident)
        result.extra["eval_images_per_s_device_resident"] = _round(len(host_images) / resident_time[0])
    return result


def _engine_batch_prep_seconds(setup: Setup, train: TrainData) -> float:
    """The engine's per-batch data work alone (sample order, index_select, BatchAugment, memory format) over
    the same epoch, synchronised: what the data share of (a) is made of."""
    device, bs = setup.device, setup.batch_size
    augment = BatchAugment.from_recipe(setup.recipe, setup.spec)
    images, labels = train.images, train.labels
    if setup.recipe.augmentation_mode == "offline" and augment.augments:
        images, source = augment.expand_offline(images, stream_generator(0, "offline", device))
        labels = labels.index_select(0, source)
    weights = class_balanced_weights(labels) if setup.recipe.sampler == "class_balanced" else None
    sampler, generator = stream_generator(0, "sampler", device), stream_generator(0, "augment", device)
    with _common.stopwatch(device) as elapsed:
        order = epoch_order(images.shape[0], setup.recipe.sampler, sampler, weights)
        for begin in range(0, images.shape[0], bs):
            rows = order[begin:begin + bs]
            batch_format(augment(images.index_select(0, rows), generator), setup.channels_last)
            labels.index_select(0, rows)
    return elapsed[0]


def _train_steps(setup: Setup, model: nn.Module, batches: Callable[[], Any], steps: int) -> tuple[int, float]:
    """Run ``steps`` optimiser steps on batches from ``batches()`` (a (images, labels) pair, host or device);
    return (images seen, seconds spent waiting in ``batches()``)."""
    optimizer = build_optimizer(model, setup.recipe)
    criterion = setup.criterion()
    model.train()
    seen, waited = 0, 0.0
    for _ in range(steps):
        start = time.perf_counter()
        images, labels = batches()
        waited += time.perf_counter() - start
        images = images.to(setup.device, non_blocking=True)
        if setup.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(setup.device, non_blocking=True)
        with setup.autocast():
            loss, _ = compute_loss(model, images, labels, criterion)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += images.shape[0]
    return seen, waited


def _eval_batches(setup: Setup, model: nn.Module, batches: Callable[[], Any], steps: int) -> tuple[int, float]:
    model.eval()
    seen, waited, outputs = 0, 0.0, []
    with torch.inference_mode():
        for _ in range(steps):
            start = time.perf_counter()
            images, _ = batches()
            waited += time.perf_counter() - start
            images = images.to(setup.device, non_blocking=True)
            if setup.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with setup.autocast():
                outputs.append(model(images).float())
            seen += images.shape[0]
    torch.cat(outputs)
    return seen, waited


def _slices(images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> Callable[[], Any]:
    """Consecutive batches of device tensors, wrapping around."""
    position = [0]

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        begin = position[0]
        if begin >= images.shape[0]:
            begin = 0
        position[0] = begin + batch_size
        return images[begin:begin + batch_size], labels[begin:begin + batch_size]

    return next_batch


def measure_raw(setup: Setup) -> Measure:
    """(b) pre-normalised float tensors on the device (shuffled once), model, optimiser, loss."""
    device, bs = setup.device, setup.batch_size
    order = torch.randperm(len(setup.images), generator=torch.Generator().manual_seed(0))
    images = eval_transform(setup.images[order].to(device), setup.spec)
    if setup.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = setup.labels[order].to(device)
    model = setup.model()
    _train_steps(setup, model, _slices(images, labels, bs), setup.warmup)
    _common.reset_peak_memory(device)
    with _common.stopwatch(device) as train_time:
        seen, _ = _train_steps(setup, model, _slices(images, labels, bs), setup.steps)
    result = Measure(train_images=seen, train_seconds=train_time[0], data_share=0.0,
                     train_memory_mib=_common.peak_memory_mib(device))
    eval_steps = math.ceil(len(images) / setup.eval_batch_size)
    _eval_batches(setup, model, _slices(images, labels, setup.eval_batch_size), 1)
    _common.reset_peak_memory(device)
    with _common.stopwatch(device) as eval_time:
        seen, _ = _eval_batches(setup, model, _slices(images, labels, setup.eval_batch_size), eval_steps)
    result.eval_images, result.eval_seconds, result.eval_data_share = seen, eval_time[0], 0.0
    result.eval_memory_mib = _common.peak_memory_mib(device)
    return result


# ---------------------------------------------------------------------------------- conventional pipeline


def write_image_folder(setup: Setup, root: Path) -> int:
    """The images as JPEGs (quality 90) in ImageFolder layout, ``root/<label>/<i>.jpg``; returns the bytes."""
    total = 0
    pixels = setup.images.permute(0, 2, 3, 1).numpy()
    for i, (image, label) in enumerate(zip(pixels, setup.labels.tolist())):
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:06d}.jpg"
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path, quality=90)
        total += path.stat().st_size
    return total


def _torchvision_step(name: str, params: dict[str, Any], size: int) -> Any:
    """A torchvision (PIL) transform in the spirit of one fbench augmentation step."""
    if name == "original":
        return T.Lambda(lambda image: image)
    if name == "hflip":
        return T.RandomHorizontalFlip(float(params.get("p", 0.5)))
    if name == "rotate_zoom":
        zoom = float(params.get("resize", 72)) / float(params.get("crop", 64))
        return T.Compose([T.RandomRotation(float(params.get("max_degrees", 15))),
                          T.Resize(round(size * zoom)), T.CenterCrop(size)])
    if name == "resize_crop":
        zoom = float(params.get("resize", 72)) / float(params.get("crop", 64))
        return T.Compose([T.Resize(round(size * zoom)), T.RandomCrop(size)])
    if name == "random_resized_crop":
        return T.RandomResizedCrop(size, scale=tuple(params.get("scale", (0.8, 1.0))))
    if name == "color_jitter":
        return T.ColorJitter(**{k: float(v) for k, v in params.items()})
    raise ValueError(f"no torchvision counterpart for augmentation {name!r}")


def conventional_transforms(setup: Setup, train: bool) -> Any:
    """PIL pipeline: (grayscale), the recipe's augmentation (offline variants become one random choice per
    sample), ToTensor, Normalize."""
    steps: list[Any] = [T.Grayscale(1)] if setup.spec.channels == 1 else []
    if train and setup.recipe.augmentation:
        size = setup.case.size
        parts = [_torchvision_step(a.name, {**a.params, **({"p": 1.0} if a.name == "hflip" else {})}
                                   if setup.recipe.augmentation_mode == "offline" else dict(a.params), size)
                 for a in setup.recipe.augmentation]
        steps.append(T.RandomChoice(parts) if setup.recipe.augmentation_mode == "offline" else T.Compose(parts))
    steps += [T.ToTensor(), T.Normalize(setup.spec.mean, setup.spec.std)]
    return T.Compose(steps)


def _loader(setup: Setup, root: Path, train: bool) -> torch.utils.data.DataLoader:
    dataset = ImageFolder(str(root), transform=conventional_transforms(setup, train))
    sampler = None
    if train and setup.recipe.sampler == "class_balanced":
        weights = class_balanced_weights(torch.tensor(dataset.targets))
        sampler = torch.utils.data.WeightedRandomSampler(weights.tolist(), len(dataset), replacement=True)
    return torch.utils.data.DataLoader(
        dataset, batch_size=setup.batch_size if train else setup.eval_batch_size,
        shuffle=train and sampler is None, sampler=sampler, num_workers=setup.workers,
        pin_memory=setup.device.type == "cuda", persistent_workers=setup.workers > 0)


def _iterator_batches(loader: torch.utils.data.DataLoader) -> Callable[[], Any]:
    iterator = [iter(loader)]

    def next_batch() -> Any:
        try:
            return next(iterator[0])
        except StopIteration:  # a warm-up longer than an epoch
            iterator[0] = iter(loader)
            return next(iterator[0])

    return next_batch


def measure_dataloader(setup: Setup, root: Path) -> Measure:
    """(c) ImageFolder + DataLoader: a warm-up of ``warmup`` batches (starts the workers), then one timed
    epoch; the time in ``next()`` is the data wait."""
    device = setup.device
    train_loader, eval_loader = _loader(setup, root, True), _loader(setup, root, False)
    model = setup.model()
    _train_steps(setup, model, _iterator_batches(train_loader), setup.warmup)
    _common.reset_peak_memory(device)
    with _common.stopwatch(device) as train_time:
        seen, waited = _train_steps(setup, model, _iterator_batches(train_loader), len(train_loader))
    result = Measure(train_images=seen, train_seconds=train_time[0], data_share=waited / train_time[0],
                     train_memory_mib=_common.peak_memory_mib(device))
    _eval_batches(setup, model, _iterator_batches(eval_loader), 1)
    _common.reset_peak_memory(device)
    with _common.stopwatch(device) as eval_time:
        seen, waited = _eval_batches(setup, model, _iterator_batches(eval_loader), len(eval_loader))
    result.eval_images, result.eval_seconds = seen, eval_time[0]
    result.eval_data_share = waited / eval_time[0]
    result.eval_memory_mib = _common.peak_memory_mib(device)
    result.extra["workers"] = setup.workers
    del train_loader, eval_loader
    _wait_for_workers_to_exit()
    return result


def _wait_for_workers_to_exit(timeout: float = 10.0) -> None:
    """Collect the loaders (their persistent workers stop when they are freed) and wait until the worker processes
    have exited: a worker still shutting down would load the cores while the next method is timed."""
    gc.collect()
    deadline = time.perf_counter() + timeout
    while multiprocessing.active_children() and time.perf_counter() < deadline:  # also reaps exited ones
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------------ driver


def _median_measure(rounds: list[Measure]) -> Measure:
    """The round with the median training throughput (its training numbers go with it), with the evaluation
    numbers of the round with the median evaluation throughput: the two are chosen apart, since an evaluation
    pass is short and its rate varies from round to round on its own."""
    by_train = sorted(rounds, key=lambda m: m.train_ips)[(len(rounds) - 1) // 2]
    by_eval = sorted(rounds, key=lambda m: m.eval_ips)[(len(rounds) - 1) // 2]
    return replace(by_train, eval_images=by_eval.eval_images, eval_seconds=by_eval.eval_seconds,
                   eval_data_share=by_eval.eval_data_share, eval_memory_mib=by_eval.eval_memory_mib,
                   extra={**by_train.extra, **{k: v for k, v in by_eval.extra.items() if k.startswith("eval")}})


def _ratio(a: float, b: float) -> float | None:
    return _round(a / b, 3) if b and math.isfinite(a) and math.isfinite(b) else None


def round_order(round_index: int) -> tuple[str, ...]:
    """The methods' order in one round: rotated each round, so that no method always runs first (warm caches,
    a neighbour's load that rises or falls during a round)."""
    shift = round_index % len(METHODS)
    return METHODS[shift:] + METHODS[:shift]


def _round_ratios(rounds: dict[str, list[Measure]]) -> dict[str, list[float | None]]:
    """Each round's ratios (the rounds interleave, so round i of each method ran under the same load)."""
    pairs = {"train_engine_over_raw": ("train_ips", "engine", "raw"),
             "train_engine_over_dataloader": ("train_ips", "engine", "dataloader"),
             "eval_engine_over_raw": ("eval_ips", "engine", "raw"),
             "eval_engine_over_dataloader": ("eval_ips", "engine", "dataloader")}
    return {name: [_ratio(getattr(x, rate), getattr(y, rate)) for x, y in zip(rounds[top], rounds[bottom])]
            for name, (rate, top, bottom) in pairs.items()}


def run_case(case: Case, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    setup = make_setup(case, args, device)
    rounds: dict[str, list[Measure]] = {m: [] for m in METHODS}
    with tempfile.TemporaryDirectory(prefix="fbench-throughput-") as tmp:
        jpeg_bytes = write_image_folder(setup, Path(tmp))
        measures: dict[str, Callable[[], Measure]] = {
            "engine": lambda: measure_engine(setup), "raw": lambda: measure_raw(setup),
            "dataloader": lambda: measure_dataloader(setup, Path(tmp))}
        for index in range(args.repeats):
            for method in round_order(index):
                rounds[method].append(measures[method]())
    chosen = {m: _median_measure(rounds[m]) for m in METHODS}
    a, b, c = chosen["engine"], chosen["raw"], chosen["dataloader"]
    return {
        "model": case.model, "size": case.size, "input": list(setup.spec.input_size),
        "batch_size": setup.batch_size, "eval_batch_size": setup.eval_batch_size, "steps": setup.steps,
        "warmup_steps": setup.warmup, "images": len(setup.images), "offline_expansion": setup.expansion,
        "data_source": setup.data_source, "jpeg_megabytes": round(jpeg_bytes / 2**20, 2),
        "recipe": {"optimizer": setup.recipe.optimizer, "augmentation": [x.name for x in setup.recipe.augmentation],
                   "augmentation_mode": setup.recipe.augmentation_mode, "sampler": setup.recipe.sampler},
        "amp_bf16": setup.amp, "channels_last": setup.channels_last,
        **{m: chosen[m].to_dict() for m in METHODS},
        "ratios": {"train_engine_over_raw": _ratio(a.train_ips, b.train_ips),
                   "train_engine_over_dataloader": _ratio(a.train_ips, c.train_ips),
                   "eval_engine_over_raw": _ratio(a.eval_ips, b.eval_ips),
                   "eval_engine_over_dataloader": _ratio(a.eval_ips, c.eval_ips)},
        "round_ratios": _round_ratios(rounds),
        "rounds": {m: [r.to_dict() for r in rounds[m]] for m in METHODS},
    }


def _fmt(value: float | None, digits: int | None = None) -> str:
    """``digits`` decimals, or by default three significant figures (CPU rates can be below 1 image/s)."""
    if value is None:
        return "-"
    if digits is not None:
        return f"{value:.{digits}f}"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def print_table(results: list[dict[str, Any]]) -> None:
    header = (f"{'case':<22}{'train img/s  a':>16}{'b':>9}{'c':>9}{'a/b':>7}{'a/c':>7}"
              f"{'eval img/s  a':>15}{'b':>9}{'c':>9}{'a/b':>7}{'a/c':>7}{'prep a':>8}{'wait c':>8}"
              f"{'mem MiB a':>11}{'b':>8}{'c':>8}")
    print(header)
    print("-" * len(header))
    for r in results:
        a, b, c, q = r["engine"], r["raw"], r["dataloader"], r["ratios"]
        print(f"{r['model'] + '@' + str(r['size']):<22}"
              f"{_fmt(a['train_images_per_s']):>16}{_fmt(b['train_images_per_s']):>9}"
              f"{_fmt(c['train_images_per_s']):>9}{_fmt(q['train_engine_over_raw'], 2):>7}"
              f"{_fmt(q['train_engine_over_dataloader'], 2):>7}"
              f"{_fmt(a['eval_images_per_s']):>15}{_fmt(b['eval_images_per_s']):>9}"
              f"{_fmt(c['eval_images_per_s']):>9}{_fmt(q['eval_engine_over_raw'], 2):>7}"
              f"{_fmt(q['eval_engine_over_dataloader'], 2):>7}"
              f"{_fmt(a['data_share'] * 100 if a['data_share'] is not None else None):>7}%"
              f"{_fmt(c['data_share'] * 100 if c['data_share'] is not None else None):>7}%"
              f"{_fmt(a['train_memory_mib']):>11}{_fmt(b['train_memory_mib']):>8}{_fmt(c['train_memory_mib']):>8}")
    print("a = fbench engine (its training batches; its validation pass and offline expansion are in the JSON as "
          "val_seconds and setup_seconds), b = raw loop on device tensors, c = ImageFolder + DataLoader; prep a = "
          "share of the engine's step time spent preparing batches on the device; wait c = share of (c)'s step "
          "time in next(); mem = peak torch.cuda.max_memory_allocated while training (CUDA only)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--models", nargs="+", default=None,
                        help="models as NAME or NAME@SIZE[+SIZE] (default: " + " ".join(DEFAULT_MODELS) + ")")
    parser.add_argument("--sizes", nargs="+", type=int, default=None,
                        help="input sizes for --models entries given without @SIZE")
    parser.add_argument("--batch-size", type=int, default=None, help="training batch size (default: the recipe's)")
    parser.add_argument("--eval-batch-size", type=int, default=None, help="evaluation batch size (default: "
                                                                          "the training batch size)")
    parser.add_argument("--preset", choices=PRESETS, default=None,
                        help="cpu: every built-in and three timm families at CPU size, 3 interleaved rounds, about "
                             "4 minutes on 2 cores; gpu: the default models at 50 steps (default: cpu when the "
                             "device is a CPU, else gpu)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (default: gpu 50, cpu the "
                        "preset's per model or 8, quick 3); the image set holds steps x batch size images")
    parser.add_argument("--warmup", type=int, default=None,
                        help="warm-up steps per method (default: gpu 5, cpu 2, quick 1)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers of (c) (default: min(8, usable cores); quick 0)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds of a, b, c (each round in "
                        "another order); the median round is reported (default: cpu 3, else 1)")
    parser.add_argument("--images", choices=("synth", "smooth"), default="synth",
                        help="synth: jittered copies of rendered synthetic faces; smooth: smooth random images")
    parser.add_argument("--pool", type=int, default=14, help="distinct rendered faces behind the image set")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the main process")
    parser.add_argument("--quick", action="store_true", help="CI size: 3 steps, batch 8, small inputs, no workers")
    parser.add_argument("--out", default="throughput.json", help="where to write the JSON result")
    args = parser.parse_args(argv)
    if args.preset is None:
        args.preset = "cpu" if _common.resolve_device(args.device).type == "cpu" else "gpu"
    cpu = args.preset == "cpu" and not args.quick
    args.default_steps = 3 if args.quick else 8 if cpu else 50
    if args.warmup is None:
        args.warmup = 1 if args.quick else CPU_PRESET_WARMUP if cpu else 5
    if args.repeats is None:
        args.repeats = CPU_PRESET_REPEATS if cpu else 1
    if args.quick:
        args.batch_size = args.batch_size or 8
        args.pool = min(args.pool, 7)
        args.workers = 0 if args.workers is None else args.workers
    if args.workers is None:
        args.workers = min(8, _common.usable_cores())
    args.use_cpu_preset = cpu and args.models is None
    args.models = args.models or list(QUICK_MODELS if args.quick else CPU_PRESET if cpu else DEFAULT_MODELS)
    if min(args.steps or 1, args.repeats) < 1 or args.warmup < 0 or args.workers < 0:
        parser.error("--steps and --repeats must be at least 1; --warmup and --workers at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = _common.resolve_device(args.device)
    if args.use_cpu_preset:
        cases = [replace(case, batch_size=CPU_PRESET[case.label][0], steps=CPU_PRESET[case.label][1])
                 for case in parse_cases(args.models, None, False)]
    else:
        cases = parse_cases(args.models, args.sizes, args.quick)
    report: dict[str, Any] = {
        "benchmark": "throughput", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": sys.argv,
        "hardware": _common.hardware(device), "versions": _common.versions(),
        "settings": {"device": str(device), "cases": [c.label for c in cases], "batch_size": args.batch_size,
                     "eval_batch_size": args.eval_batch_size, "preset": args.preset,
                     "steps": args.steps or {c.label: c.steps or args.default_steps for c in cases},
                     "warmup": args.warmup,
                     "workers": args.workers, "repeats": args.repeats, "images": args.images,
                     "quick": args.quick, "threads": torch.get_num_threads()},
        "results": [],
    }
    print(f"device {device}; {report['hardware']['cpu']} ({report['hardware']['usable_cores']} cores, load "
          f"{report['hardware']['load_average']}); {report['hardware'].get('gpu', 'no GPU')}")
    for case in cases:
        started = time.perf_counter()
        print(f"{case.label}: measuring engine, raw loop and DataLoader ({args.workers} workers) ...", flush=True)
        report["results"].append(run_case(case, args, device))
        print(f"{case.label}: done in {time.perf_counter() - started:.1f}s", flush=True)
        _common.write_json(args.out, report)  # partial results survive a later failure
    report["load_average_end"] = _common.load_average()
    print()
    print_table(report["results"])
    print(f"\nwrote {_common.write_json(args.out, report)}")
    return report


if __name__ == "__main__":
    main()
