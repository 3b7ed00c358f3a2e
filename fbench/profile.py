"""Parameters, MACs and speed of an architecture.

MACs are multiply-accumulates of convolutions, linear layers, matrix products and attention, counted by fvcore
and cross-checked with ``torch.utils.flop_counter`` (which counts FLOPs = 2 x MACs). Normalisation, pooling and
element-wise operators carry no MACs by this convention (batch norm folds into the preceding convolution at
inference); every operator that was not counted is listed with its call count, and operators that neither
counter knows are flagged, so nothing is dropped silently.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import platform
import re
import statistics
import time
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import fbench
from fbench.engine.devices import resolve_device, synchronize
from fbench.errors import ProfileError
from fbench.registry import get_architecture

DISAGREEMENT_THRESHOLD = 0.02

# Operators that carry no multiply-accumulates: normalisation, pooling, activations, element-wise arithmetic,
# and tensor plumbing. Anything outside this set and the counted ones is reported as unrecognised.
_NON_MAC_WORDS = (
    "norm", "pool", "relu", "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "hardtanh", "mish",
    "softmax", "softplus", "elu", "prelu", "dropout", "add", "sub", "mul", "div", "mean", "sum", "max", "min",
    "exp", "log", "sqrt", "rsqrt", "pow", "erf", "abs", "neg", "reciprocal", "clamp", "pad", "upsample",
    "interpolate", "cat", "stack", "view", "reshape", "permute", "transpose", "flatten", "squeeze", "unsqueeze",
    "expand", "contiguous", "slice", "select", "index", "split", "chunk", "unbind", "unfold", "roll", "size",
    "to", "copy", "zeros", "ones", "full", "empty", "arange", "narrow", "gather", "masked_fill", "where",
    "eq", "ne", "lt", "gt", "le", "ge", "floor", "ceil", "round", "sign", "detach", "type_as", "repeat",
    "flip", "t", "Int", "ScalarImplicit", "numpy_t", "alias", "lift_fresh", "scalar_tensor", "fill",
    "std", "var", "cumsum", "sort", "topk", "argmax", "bitwise", "logical", "remainder", "linspace", "meshgrid",
    "amax", "amin", "maximum", "minimum", "argmin", "median", "any", "all", "isnan", "nan", "logsumexp",
)


@dataclass
class MacCount:
    macs: int
    by_operator: dict[str, int]
    not_counted: dict[str, int]  # operator -> calls, for every operator that contributed no MACs
    unrecognised: list[str]  # of those, the ones that may hide MACs


@dataclass
class ProfileResult:
    architecture: str
    options: dict[str, Any]
    num_classes: int
    input_size: tuple[int, int, int]
    params: int
    trainable_params: int
    buffers: int
    macs: int
    macs_by_operator: dict[str, int]
    macs_torch: int
    macs_disagreement: float
    macs_disagree: bool
    not_counted_operators: dict[str, int]
    unrecognised_operators: list[str]
    device: str
    latency_ms: float | None = None
    latency_repeats: int = 0
    throughput: float | None = None
    throughput_batch_size: int | None = None
    throughput_repeats: int = 0
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_parameters(model: nn.Module) -> tuple[int, int, int]:
    """Total parameters, trainable parameters, and buffer elements (BN running statistics and the like)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers())
    return total, trainable, buffers


def _is_non_mac(operator: str) -> bool:
    name = operator.split("::")[-1].strip("_")
    return name in _NON_MAC_WORDS or any(word in _NON_MAC_WORDS for word in re.split(r"[_\d]+", name))


def _shape(value: Any) -> list[int]:
    from fvcore.nn.jit_handles import get_shape

    return list(get_shape(value))


def _sdpa_macs_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """scaled_dot_product_attention: Q.K^T and A.V, i.e. L*S*(E+Ev) per batch element and head."""
    query, key, value = (_shape(v) for v in inputs[:3])
    batch = math.prod(query[:-2])
    return batch * query[-2] * key[-2] * (query[-1] + value[-1])


def _baddbmm_macs_jit(inputs: list[Any], outputs: list[Any]) -> int:
    batch1, batch2 = _shape(inputs[1]), _shape(inputs[2])
    return batch1[0] * batch1[1] * batch1[2] * batch2[2]


def count_macs(model: nn.Module, example: torch.Tensor) -> MacCount:
    """MACs of one forward pass with fvcore, listing every operator that was not counted."""
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn import jit_handles as handles

    analysis = FlopCountAnalysis(model, example)
    analysis.clear_op_handles()
    analysis.set_op_handle(
        "aten::_convolution", handles.conv_flop_jit,
        "aten::addmm", handles.addmm_flop_jit,
        "aten::bmm", handles.bmm_flop_jit,
        "aten::baddbmm", _baddbmm_macs_jit,
        "aten::einsum", handles.einsum_flop_jit,
        "aten::matmul", handles.matmul_flop_jit,
        "aten::mm", handles.matmul_flop_jit,
        "aten::linear", handles.linear_flop_jit,
        "aten::scaled_dot_product_attention", _sdpa_macs_jit,
    )
    # fvcore silently ignores a built-in list of operators; empty it so that every uncounted one is listed.
    analysis._ignored_ops = set()
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        total = int(analysis.total())
        by_operator = {op: int(n) for op, n in analysis.by_operator().items() if n}
        not_counted = dict(sorted(analysis.unsupported_ops().items()))
    unrecognised = sorted(op for op in not_counted if not _is_non_mac(op))
    return MacCount(total, by_operator, not_counted, unrecognised)


def _cpu_sdpa_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    batch = math.prod(query_shape[:-2])
    return 2 * batch * query_shape[-2] * key_shape[-2] * (query_shape[-1] + value_shape[-1])


def count_macs_torch(model: nn.Module, example: torch.Tensor) -> int:
    """MACs from torch's FlopCounterMode (FLOPs / 2), the cross-check."""
    custom: dict[Any, Any] = {}
    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_sdpa is not None:  # torch registers the CUDA attention kernels only
        custom[cpu_sdpa] = _cpu_sdpa_flops
    counter = FlopCounterMode(display=False, custom_mapping=custom)
    with counter, torch.no_grad():
        model(example)
    return int(counter.get_total_flops()) // 2


def _median_seconds(run: Any, device: torch.device, warmup: int, repeats: int, budget_s: float
                    ) -> tuple[float, int]:
    """Median wall time of ``run()`` after warm-up; stops early (after at least 3) when over budget."""
    for _ in range(warmup):
        run()
    synchronize(device)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < repeats:
        begin = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - begin)
        if len(times) >= 3 and time.perf_counter() - started > budget_s:
            break
    return statistics.median(times), len(times)


def measure_speed(model: nn.Module, input_size: tuple[int, int, int], device: torch.device,
                  batch_size: int, warmup: int = 3, repeats: int = 20, budget_s: float = 10.0
                  ) -> tuple[float, int, float, int]:
    """Batch-1 latency (ms) and throughput (images/s) at ``batch_size``, each the median of repeats."""
    model = model.to(device).eval()
    one = torch.randn(1, *input_size, device=device)
    batch = torch.randn(batch_size, *input_size, device=device)
    with torch.inference_mode():
        latency_s, latency_n = _median_seconds(lambda: model(one), device, warmup, repeats, budget_s)
        batch_s, batch_n = _median_seconds(lambda: model(batch), device, warmup, repeats, budget_s)
    return latency_s * 1000.0, latency_n, batch_size / batch_s, batch_n


def _versions() -> dict[str, str]:
    versions = {"fbench": fbench.__version__, "torch": torch.__version__, "python": platform.python_version()}
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):  # timm's version, without importing it
        versions["timm"] = importlib.metadata.version("timm")
    return versions


def profile_architecture(name: str, options: Mapping[str, object] | None = None, *,
                         num_classes: int | None = None, input_size: tuple[int, int] | None = None,
                         device: str | None = None, batch_size: int | None = None, speed: bool = True,
                         warmup: int = 3, repeats: int = 20) -> ProfileResult:
    """Profile a registered architecture under its spec's input (or ``input_size`` = (H, W))."""
    architecture = get_architecture(name)
    resolved = architecture.resolve_options(options)
    spec = architecture.resolve_spec(resolved)
    channels, height, width = spec.input_size
    if input_size is not None:
        height, width = input_size
    shape = (channels, height, width)
    model = architecture.build(num_classes, **resolved).eval()
    example = torch.randn(1, *shape)
    try:
        with torch.no_grad():
            model(example)
    except RuntimeError as error:
        raise ProfileError(
            f"{name} does not run on a 1x{channels}x{height}x{width} input: {error}. "
            f"Its spec expects {'x'.join(map(str, spec.input_size))}; pass --input-size H W accordingly"
        ) from error
    total, trainable, buffers = count_parameters(model)
    macs = count_macs(model, example)
    macs_torch = count_macs_torch(model, example)
    disagreement = abs(macs.macs - macs_torch) / max(macs.macs, macs_torch, 1)
    target = resolve_device(device)
    result = ProfileResult(
        architecture=name,
        options=resolved,
        num_classes=architecture.spec.num_classes if num_classes is None else num_classes,
        input_size=shape,
        params=total,
        trainable_params=trainable,
        buffers=buffers,
        macs=macs.macs,
        macs_by_operator=macs.by_operator,
        macs_torch=macs_torch,
        macs_disagreement=disagreement,
        macs_disagree=disagreement > DISAGREEMENT_THRESHOLD,
        not_counted_operators=macs.not_counted,
        unrecognised_operators=macs.unrecognised,
        device=str(target),
        versions=_versions(),
    )
    if speed:
        batch = batch_size or (64 if target.type == "cuda" else 8)
        latency, latency_n, throughput, throughput_n = measure_speed(
            model, shape, target, batch, warmup=warmup, repeats=repeats
        )
        result.latency_ms, result.latency_repeats = latency, latency_n
        result.throughput, result.throughput_batch_size, result.throughput_repeats = throughput, batch, throughput_n
    return result


def summarise_calls(counts: Mapping[str, int]) -> str:
    """'batch_norm x20, relu x17' for operator call counts."""
    return ", ".join(f"{op.split('::')[-1]} x{n}" for op, n in Counter(counts).most_common())


def summarise_macs(macs: Mapping[str, int]) -> str:
    """'conv 1.814 G, linear 3.584 K' for MACs by operator."""
    return ", ".join(f"{op.split('::')[-1]} {_si(n)}" for op, n in Counter(macs).most_common())


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.3f} {unit}"
    return str(int(value))
