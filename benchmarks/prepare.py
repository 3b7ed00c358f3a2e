"""Dataset preparation throughput: how fast fbench builds a decode cache from KDEF-size JPEGs with face detection.

Renders (or reuses) a synthetic KDEF-layout set at KDEF's frame size (562 x 762), then times, each from a cold
cache folder:

  cold    ``build_cache`` at --input-size / --channels with --crop (default haar: dlib's landmark model where it
          is installed, then frontal + profile Haar detection);
  reuse   a second size (--second-size, 3 channels) that reads the face boxes the cold build kept;
  haar    (where the landmark model is installed) the cold build again with it turned off
          (FBENCH_LANDMARK_MODEL=none): Haar detection only, as without dlib;
  before  (--baseline) what fbench did before: full-resolution decode and Haar detection on threads.

Each reports wall images/s and CPU time per image (this process and its workers): on a loaded machine the wall
rate falls with the load, and ``cores / CPU time per image`` is the rate the cores would give unloaded. The JSON
holds the hardware and the load averages at the start and end, as benchmarks/throughput.py writes them.

    python benchmarks/prepare.py --baseline                 # 10 identities x 1 session (350 images)
    python benchmarks/prepare.py --data /path/to/KDEF       # a real KDEF
    python benchmarks/prepare.py --quick                    # CI size: 35 small images
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # puts the repository root on sys.path
import numpy as np
import torch

from fbench.data.cache import build_cache, default_cache_dir, default_workers
from fbench.data.faces import KDEF_FALLBACK_BOXES, Square, crop_square, resize, to_channels
from fbench.data.images import read_image_file
from fbench.data.landmarker import OFF_VARIABLE, available_model
from fbench.data.locate import load_dataset
from fbench.data.synth.build import SynthConfig, build_synthetic_kdef
from fbench.data.table import SampleTable


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (worker processes), user + system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(count: int, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    cpu, wall = cpu_seconds(), time.perf_counter()
    extra = work()
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    cores = _common.usable_cores()
    return {"images": count, "seconds": round(wall, 3), "images_per_s": round(count / wall, 1),
            "cpu_seconds": round(cpu, 3), "cpu_ms_per_image": round(1000 * cpu / count, 2),
            "unloaded_images_per_s_estimate": round(cores * count / cpu, 1) if cpu > 0 else None, **extra}


def synthetic_set(folder: Path, identities: int, sessions: int, size: tuple[int, int], workers: int) -> Path:
    """The synthetic set in ``folder``, rendered unless a build with these settings is there already."""
    marker = folder / "fbench_synthetic.json"
    expected = identities * sessions * 35
    if marker.is_file() and len(list(folder.glob("*/*.JPG"))) == expected:
        return folder
    print(f"rendering {expected} synthetic images at {size[1]}x{size[0]} into {folder} ...", flush=True)
    build_synthetic_kdef(folder, SynthConfig(identities=identities, sessions=sessions, image_size=size),
                         workers=workers, overwrite=True)
    return folder


def without_manifest(root: Path, scratch: Path) -> Path:
    """A view of ``root`` without its face-box manifest (links to the JPEGs), so that kdef's crop is Haar."""
    view = scratch / "haar-view"
    for path in root.glob("*/*.JPG"):
        (view / path.parent.name).mkdir(parents=True, exist_ok=True)
        (view / path.parent.name / path.name).symlink_to(path.resolve())
    if (root / "fbench_synthetic.json").is_file():
        shutil.copy2(root / "fbench_synthetic.json", view / "fbench_synthetic.json")
    return view


def _old_detection(image: np.ndarray, pose: str, cascades: Any) -> Square:
    """Face detection as fbench did it before (full resolution, both profile directions): the baseline."""
    import cv2

    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    height, width = gray.shape
    side = max(24, min(height, width) // 6)
    frontal, profile = cascades
    found: list[tuple[int, int, int, int]] = []
    if pose in ("", "S", "HL", "HR"):
        found = [(int(x), int(y), int(w), int(h))
                 for (x, y, w, h) in frontal.detectMultiScale(gray, 1.1, 5, minSize=(side, side))]
    if not found:
        found = [(int(x), int(y), int(w), int(h))
                 for (x, y, w, h) in profile.detectMultiScale(gray, 1.1, 5, minSize=(side, side))]
        found += [(width - int(x) - int(w), int(y), int(w), int(h)) for (x, y, w, h) in
                  profile.detectMultiScale(gray[:, ::-1].copy(), 1.1, 5, minSize=(side, side))]
    if found:
        x, y, w, h = max(found, key=lambda b: b[2] * b[3])
        return Square.around(x, y, x + w, y + h)
    fx0, fy0, fx1, fy1 = KDEF_FALLBACK_BOXES.get(pose, KDEF_FALLBACK_BOXES[""])
    return Square.around(fx0 * width, fy0 * height, fx1 * width, fy1 * height, margin=0.0)


def baseline(table: SampleTable, size: tuple[int, int, int]) -> dict[str, Any]:
    """The pre-change build: every image decoded in full and searched at full resolution, on threads."""
    import threading

    import cv2

    local = threading.local()

    def cascades() -> Any:
        if not hasattr(local, "pair"):
            folder = cv2.data.haarcascades  # type: ignore[attr-defined]
            local.pair = (cv2.CascadeClassifier(folder + "haarcascade_frontalface_default.xml"),
                          cv2.CascadeClassifier(folder + "haarcascade_profileface.xml"))
        return local.pair

    channels, height, width = size
    rows = list(zip(table.frame["path"], table.frame["pose"].astype(str)))

    def one(row: tuple[str, str]) -> np.ndarray:
        image = read_image_file(Path(table.root) / row[0])
        square = _old_detection(image, row[1], cascades())
        return resize(to_channels(crop_square(image, square), channels), height, width)

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        faces = list(pool.map(one, rows))
    return {"shape": [len(faces), *faces[0].shape]}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a KDEF folder (default: a synthetic set, rendered once)")
    parser.add_argument("--render-dir", type=Path,
                        help="where the synthetic set is rendered and reused (default: $FBENCH_CACHE/bench)")
    parser.add_argument("--identities", type=int, default=10, help="synthetic identities (default 10)")
    parser.add_argument("--sessions", type=int, default=1, choices=[1, 2], help="synthetic sessions (default 1)")
    parser.add_argument("--size", nargs=2, type=int, default=(762, 562), metavar=("H", "W"),
                        help="synthetic image height and width (default 762 562, KDEF's)")
    parser.add_argument("--crop", choices=["haar", "box", "none"], default="haar", help="crop policy (haar)")
    parser.add_argument("--input-size", type=int, default=64, help="cold build's side (default 64)")
    parser.add_argument("--channels", type=int, choices=[1, 3], default=1, help="cold build's channels (1)")
    parser.add_argument("--second-size", type=int, default=112, help="the reuse build's side, 3 channels (112)")
    parser.add_argument("--workers", type=int, default=None, help="decoders (default: usable cores)")
    parser.add_argument("--processes", choices=["auto", "on", "off"], default="auto",
                        help="worker processes (on), threads (off), or fbench's choice by set size (auto)")
    parser.add_argument("--baseline", action="store_true", help="also time the pre-change full-resolution build")
    parser.add_argument("--quick", action="store_true", help="CI size: 1 identity, 35 images of 190 x 140")
    parser.add_argument("--out", default="prepare.json", help="where to write the JSON result")
    args = parser.parse_args(argv)
    if args.quick:
        args.identities, args.sessions, args.size = 1, 1, (190, 140)
        args.input_size, args.second_size = min(args.input_size, 32), min(args.second_size, 48)
    if min(args.identities, args.input_size, args.second_size) < 1 or (args.workers or 1) < 1:
        parser.error("--identities, --input-size, --second-size and --workers must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    workers = args.workers or default_workers()
    processes = {"auto": None, "on": True, "off": False}[args.processes]
    report: dict[str, Any] = {
        "benchmark": "prepare", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": sys.argv,
        "hardware": _common.hardware(torch.device("cpu")), "versions": _common.versions(),
        "settings": {"crop": args.crop, "input": [args.channels, args.input_size, args.input_size],
                     "second_input": [3, args.second_size, args.second_size], "workers": workers,
                     "processes": args.processes, "quick": args.quick},
        "results": {},
    }
    print(f"{report['hardware']['cpu']} ({report['hardware']['usable_cores']} cores, load "
          f"{report['hardware']['load_average']}); {workers} workers", flush=True)
    with tempfile.TemporaryDirectory(prefix="fbench-prepare-") as scratch_name:
        scratch = Path(scratch_name)
        if args.data is not None:
            root = args.data
        else:
            height, width = args.size
            name = f"synth-kdef-{height}x{width}-{args.identities}x{args.sessions}"
            folder = (scratch if args.quick else args.render_dir or default_cache_dir() / "bench") / name
            root = synthetic_set(folder, args.identities, args.sessions, (height, width), workers)
        if args.crop == "haar" and (root / "fbench_manifest.csv").is_file():
            root = without_manifest(root, scratch)
        table = load_dataset("kdef", {"kdef": str(root)})
        sizes = (args.channels, args.input_size, args.input_size), (3, args.second_size, args.second_size)
        report["settings"].update(dataset=str(root), images=len(table), synthetic=table.synthetic)
        cache = scratch / "cache"

        def build(size: tuple[int, int, int]) -> dict[str, Any]:
            cached = build_cache(table, size, crop=args.crop, cache_dir=cache, workers=workers, processes=processes)
            return {"input": list(size), "detections": cached.meta["detections"],
                    "boxes_reused": cached.meta["boxes_reused"]}

        runs = [("cold", sizes[0]), ("reuse", sizes[1])]
        report["settings"]["landmark_model"] = available_model()
        if args.crop == "haar" and available_model() is not None:
            runs.append(("haar", sizes[0]))
        for name, size in runs:
            if name == "haar":  # the cold build again, its boxes and cache keyed apart, the model turned off
                os.environ[OFF_VARIABLE] = "none"
            try:
                report["results"][name] = result = timed(len(table), functools.partial(build, size))
            finally:
                if name == "haar":
                    os.environ.pop(OFF_VARIABLE, None)
            print(f"{name:<7}{'x'.join(map(str, size)):>10}: {result['images_per_s']:>8} images/s, "
                  f"{result['cpu_ms_per_image']} ms CPU per image (unloaded {report['hardware']['usable_cores']} "
                  f"cores: ~{result['unloaded_images_per_s_estimate']} images/s); {result['detections']}", flush=True)
        if args.baseline:
            report["results"]["before"] = result = timed(len(table), lambda: baseline(table, sizes[0]))
            print(f"{'before':<7}{'x'.join(map(str, sizes[0])):>10}: {result['images_per_s']:>8} images/s, "
                  f"{result['cpu_ms_per_image']} ms CPU per image (full-resolution decode and detection)", flush=True)
    report["load_average_end"] = _common.load_average()
    print(f"load average at the end {report['load_average_end']}; wrote {_common.write_json(args.out, report)}")
    return report


if __name__ == "__main__":
    main()
