"""What the benchmark scripts share: the import path, hardware and versions, timing, and face-like images.

Nothing here imports mlflow, optuna or fvcore (directly or through fbench): the GPU machines that run these
scripts do not have them.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout where fbench is not pip-installed
    sys.path.insert(0, str(ROOT))

import numpy as np
import torch

import fbench
from fbench.data.table import LABEL_INDEX
from fbench.engine.devices import resolve_device as fbench_resolve_device

try:  # the synthetic face renderer needs OpenCV and SciPy; without them face_like_images uses smooth images
    from fbench.data.synth.build import EXPRESSION_LABELS, SynthConfig, render_arrays
except ImportError as error:
    RENDERER_MISSING: ImportError | None = error
else:
    RENDERER_MISSING = None

NUM_CLASSES = 7


# ------------------------------------------------------------------------------------------- environment


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, OSError, ValueError):
        return None


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages; None where the OS keeps none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def hardware(device: torch.device) -> dict[str, Any]:
    """The machine: CPU model and cores, memory, load at the start, and the GPU when ``device`` is CUDA."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "usable_cores": usable_cores(),
        "torch_threads": torch.get_num_threads(), "memory_gib": _memory_gib(), "load_average": load_average(),
        "platform": platform.platform(), "host": platform.node(), "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    gpu_count=torch.cuda.device_count(), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """The checkout's commit, with ``-dirty`` when the working tree has changes; None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "") if commit else None


def versions() -> dict[str, Any]:
    found = {name: _version(name) for name in ("torch", "torchvision", "timm", "numpy", "pillow", "pandas")}
    return {"python": platform.python_version(), **found, "torch_runtime": torch.__version__,
            "fbench": fbench.__version__, "git_commit": git_commit()}


def resolve_device(name: str) -> torch.device:
    return fbench_resolve_device(name)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return out


# ------------------------------------------------------------------------------------------------ timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def stopwatch(device: torch.device) -> Iterator[list[float]]:
    """Wall time of the block in seconds, synchronised with ``device`` at both ends; read ``watch[0]`` after."""
    box = [0.0]
    synchronize(device)
    start = time.perf_counter()
    try:
        yield box
    finally:
        synchronize(device)
        box[0] = time.perf_counter() - start


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float | None:
    """``torch.cuda.max_memory_allocated`` since the last reset, in MiB (None off CUDA)."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


# ------------------------------------------------------------------------------------------------ images


def _rendered_pool(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` synthetic faces (one or more identities, 7 expressions x frontal and half poses) at
    ``size`` x ``size`` RGB, from fbench's renderer; labels are the expressions' canonical indices."""
    if RENDERER_MISSING is not None:
        raise RENDERER_MISSING
    per_identity = 7 * 2
    identities = max(1, -(-count // per_identity))
    config = SynthConfig(identities=identities, sessions=1, image_size=(max(size, 32), max(size, 32)), seed=seed,
                         poses=("S", "HL"))
    images, frame = render_arrays(config, workers=min(identities, usable_cores()))
    labels = np.array([LABEL_INDEX[EXPRESSION_LABELS[e]] for e in frame["expression"]], dtype=np.int64)
    return images[:count], labels[:count]


def _smooth_pool(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` smooth random RGB images (low-frequency noise, upsampled): they compress like photographs,
    unlike white noise, so JPEG decoding costs what it costs on real faces."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 8, 8, generator=generator) * 255
    fine = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    fine += torch.randn(fine.shape, generator=generator) * 4
    images = fine.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    labels = torch.randint(0, NUM_CLASSES, (count,), generator=generator).numpy()
    return np.ascontiguousarray(images), labels.astype(np.int64)


def face_like_images(n: int, size: int, channels: int, *, source: str = "synth", pool: int = 14, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, str]:
    """``n`` images (n x size x size x channels uint8) with labels in 0..6, and the source actually used.

    ``source="synth"`` renders a pool of synthetic faces and fills ``n`` with jittered copies (a random shift
    and brightness per copy, so no two files are the same); ``"smooth"`` (or a missing renderer dependency)
    uses smooth random images instead."""
    used = source
    if source == "synth":
        try:
            base, base_labels = _rendered_pool(min(pool, n), size, seed)
        except ImportError as error:  # the renderer needs OpenCV and SciPy
            print(f"note: synthetic face renderer unavailable ({error}); using smooth random images")
            used = "smooth"
    if used != "synth":
        base, base_labels = _smooth_pool(min(pool, n), size, seed)
    if base.shape[1] != size:
        base = _resize(base, size)
    rng = np.random.default_rng(seed)
    pick = np.arange(n) % len(base)
    out = np.empty((n, size, size, channels), dtype=np.uint8)
    for begin in range(0, n, 256):  # in chunks: a RAF-DB-sized set at 224 is 2.3 GB already
        rows = pick[begin:begin + 256]
        chunk = base[rows].astype(np.int16)
        for i, (dy, dx) in enumerate(rng.integers(-2, 3, size=(len(rows), 2))):
            chunk[i] = np.roll(chunk[i], (int(dy), int(dx)), axis=(0, 1))
        chunk += rng.integers(-12, 13, size=(len(rows), 1, 1, 1), dtype=np.int16)
        chunk = chunk.clip(0, 255).astype(np.uint8)
        if channels == 1:
            gray = chunk.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            chunk = gray.round().clip(0, 255).astype(np.uint8)[..., None]
        out[begin:begin + len(rows)] = chunk
    return out, base_labels[pick], used


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    out = torch.nn.functional.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True,
                                          align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def to_nchw(images: np.ndarray) -> torch.Tensor:
    """N x H x W x C uint8 (numpy) -> N x C x H x W uint8 (torch), as the decoded-image cache stores them."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
