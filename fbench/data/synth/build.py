"""A synthetic KDEF-like multi-view expression set, procedurally rendered: no downloads, no external assets.

Each synthetic person is a 3-D head (``fbench.data.synth.face``) with its own shape, skin, eyes, brows, nose,
mouth, ears and hair. The seven KDEF expressions are sets of facial action units (AUs) applied as geometric
deformations with a random intensity per image, on top of a resting bias per person, so cues are subtle and partly
confounded by identity. Every image is rendered at KDEF's five yaws (full left, half left, straight, half right,
full right profile) with jitter in pitch, roll, scale and position, varied light, background and camera noise.
Profiles hide half of the face because the renderer is a real z-buffered 3-D projection.

The output reads like KDEF: ``<out>/<S><X><NN>/<S><X><NN><EE><P>.JPG`` (session A/B, sex F/M, subject 01..,
expression AF AN DI HA NE SA SU, pose FL HL S HR FR), plus ``fbench_manifest.csv`` (one row per image with pose
angles, intensity, face box and landmarks) and ``fbench_synthetic.json`` (marks the folder as synthetic).

    from fbench.data.synth.build import SynthConfig, build_synthetic_kdef
    frame = build_synthetic_kdef(Path("data/synth-kdef"), SynthConfig())

The same config always gives byte-identical files, whatever the number of workers: every image draws its
randomness from (seed, subject, session, expression, pose). ``render_arrays`` renders a small set in memory instead
(tests, quick experiments); ``preview_grid`` writes one person's expressions x poses as a PNG to look at.

The heads, action units and textures live in ``fbench.data.synth.face``; the z-buffered rasteriser in
``fbench.data.synth.raster``. Everything is numpy, SciPy and OpenCV: no downloads, no external assets.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from fbench.data.synth.face import AU_NAMES, FaceModel, Scene, sample_identity_params, session_params
from fbench.data.table import BOX_COLUMNS, KDEF_POSES, KDEF_YAW, LANDMARK_COLUMNS
from fbench.errors import FbenchError

GENERATOR = "fbench.data.synth.build"
VERSION = 1
MANIFEST = "fbench_manifest.csv"
MARKER = "fbench_synthetic.json"

# KDEF expression codes and the canonical label each one means.
KDEF_EXPRESSIONS = ("AF", "AN", "DI", "HA", "NE", "SA", "SU")
EXPRESSION_LABELS = {"AF": "fear", "AN": "anger", "DI": "disgust", "HA": "happy", "NE": "neutral", "SA": "sad",
                     "SU": "surprise"}
# Lighting presets: "studio" (soft key light from the front half, the default) and "side" (a hard, low, warm light
# from one side with little ambient fill): the same faces under light another set never shows (cross-dataset runs).
LIGHTINGS = ("studio", "side")
# The action units of each expression, with their relative weights (the image's intensity scales them all).
EXPRESSION_AUS: dict[str, dict[str, float]] = {
    "NE": {},
    "HA": {"AU6": 0.8, "AU12": 1.0},
    "SA": {"AU1": 1.0, "AU4": 0.7, "AU15": 1.0},
    "SU": {"AU1": 1.0, "AU2": 1.0, "AU5": 1.0, "AU26": 1.0},
    "AF": {"AU1": 1.0, "AU2": 0.7, "AU4": 0.7, "AU5": 1.0, "AU20": 1.0, "AU26": 0.6},
    "DI": {"AU9": 1.0, "AU15": 0.6, "AU16": 0.7},
    "AN": {"AU4": 1.0, "AU5": 0.5, "AU7": 1.0, "AU23": 1.0},
}
SEXES = ("F", "M")
SESSIONS = ("A", "B")
KDEF_NAME = re.compile(r"^([AB])([FM])(\d\d)(AF|AN|DI|HA|NE|SA|SU)(FL|HL|S|HR|FR)\.JPG$")
SUBJECT_DIR = re.compile(r"^[AB][FM]\d\d$")
MANIFEST_COLUMNS = ("path", "subject", "session", "sex", "expression", "label", "pose", "yaw", "pitch", "roll",
                    "intensity") + BOX_COLUMNS + LANDMARK_COLUMNS
# Pixels per mm of head at the KDEF-like 256 x 320 frame; other sizes scale with the smaller ratio.
_BASE_SCALE = 0.78
_BASE_SIZE = (320, 256)


@dataclass
class SynthConfig:
    """What to generate. ``identities`` splits into females then males (35 F + 35 M by default);
    ``image_size`` is (height, width)."""

    identities: int = 70
    sessions: int = 2
    image_size: tuple[int, int] = (320, 256)
    seed: int = 0
    jpeg_quality: int = 90
    poses: tuple[str, ...] = KDEF_POSES
    expressions: tuple[str, ...] = KDEF_EXPRESSIONS
    # Multiplies every image's expression intensity (and the cap on AU activity): above 1 the expressions stand
    # out more against identity and light, so that short CPU runs learn them (fbench run's stand-in set).
    expression_strength: float = 1.0
    # One of LIGHTINGS: how every image is lit (recorded in the set's marker file).
    lighting: str = "studio"

    def __post_init__(self) -> None:
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.poses = tuple(self.poses)
        self.expressions = tuple(self.expressions)
        if not 1 <= self.identities <= 198:
            raise FbenchError(f"synthetic set: identities must be 1..198 (99 per sex), got {self.identities}")
        if self.sessions not in (1, 2):
            raise FbenchError(f"synthetic set: sessions must be 1 or 2 (KDEF's A and B), got {self.sessions}")
        if not 0.5 <= self.expression_strength <= 3.0:
            raise FbenchError(f"synthetic set: expression_strength must be 0.5..3, got {self.expression_strength}")
        if self.lighting not in LIGHTINGS:
            raise FbenchError(f"synthetic set: lighting must be one of {list(LIGHTINGS)}, got {self.lighting!r}")
        bad = [p for p in self.poses if p not in KDEF_POSES]
        if bad or not self.poses:
            raise FbenchError(f"synthetic set: unknown poses {bad}; choose from {list(KDEF_POSES)}")
        bad = [e for e in self.expressions if e not in KDEF_EXPRESSIONS]
        if bad or not self.expressions:
            raise FbenchError(f"synthetic set: unknown expressions {bad}; choose from {list(KDEF_EXPRESSIONS)}")
        h, w = self.image_size
        if h < 32 or w < 32 or h > 2048 or w > 2048:
            raise FbenchError(f"synthetic set: image_size (height, width) must be 32..2048, got {self.image_size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise FbenchError(f"synthetic set: jpeg_quality must be 1..100, got {self.jpeg_quality}")

    def subjects(self) -> list[tuple[str, int]]:
        """(sex, number) of every identity: females first, then males."""
        females = (self.identities + 1) // 2
        return [("F", n) for n in range(1, females + 1)] + [("M", n) for n in range(1, self.identities - females + 1)]


@dataclass(frozen=True)
class Identity:
    """One synthetic person in one session. Build with ``make_identity``; ``params`` follow from the key."""

    seed: int
    sex: str
    number: int  # 1.. within sex
    session: int  # 0 = A, 1 = B
    params: dict[str, Any] = field(compare=False, hash=False, repr=False)

    @property
    def subject(self) -> str:
        return f"{self.sex}{self.number:02d}"


def make_identity(seed: int, sex: str, number: int, session: int = 0) -> Identity:
    """The person ``sex`` + ``number`` (e.g. "F", 1) of the set drawn with ``seed``, as seen in ``session``."""
    if sex not in SEXES:
        raise FbenchError(f"synthetic identity: sex must be 'F' or 'M', got {sex!r}")
    key = SEXES.index(sex) * 1000 + number
    params = session_params(sample_identity_params(seed, key, sex), seed, key, session)
    return Identity(seed, sex, number, session, params)


@dataclass(frozen=True)
class Nuisance:
    """Everything about one image except who and which expression: pose jitter, framing, light, background,
    camera noise, and the expression's intensity with per-AU jitter and stray AU activity."""

    yaw: float
    pitch: float
    roll: float
    scale: float  # relative to the size's base framing
    shift: tuple[float, float]  # fraction of (width, height)
    light: tuple[float, float, float]
    light_colour: tuple[float, float, float]
    ambient: float
    diffuse: float
    background: tuple[float, float, float]
    bg_gradient: tuple[float, float]
    vignette: float
    noise: float  # Gaussian sigma, in 0..255 grey levels
    blur: float  # Gaussian sigma, pixels at the 256-wide frame
    intensity: float  # 0 for neutral
    au_gain: tuple[float, ...]  # per AU, multiplies the expression's weight
    au_stray: tuple[float, ...]  # per AU, added whatever the expression
    noise_seed: int


def _colour_temperature(kelvin: float) -> np.ndarray:
    """Rough RGB gain of a light of this colour temperature, normalised to a peak of 1."""
    t = (kelvin - 6500.0) / 3000.0
    rgb = np.array([1.0 - 0.10 * t, 1.0 - 0.02 * abs(t), 1.0 + 0.16 * t])
    return rgb / rgb.max()


def _rgb(values: np.ndarray) -> tuple[float, float, float]:
    red, green, blue = (float(v) for v in values)
    return red, green, blue


def sample_nuisance(rng: np.random.Generator, expression: str, pose: str, strength: float = 1.0,
                    lighting: str = "studio") -> Nuisance:
    """Draw the nuisance of one image; ``strength`` multiplies the expression's intensity; ``lighting`` is one
    of :data:`LIGHTINGS` (the same draws, mapped to another light: "studio" images stay byte-identical)."""
    if expression not in EXPRESSION_AUS:
        raise FbenchError(f"synthetic image: unknown expression {expression!r}; choose from {list(KDEF_EXPRESSIONS)}")
    if pose not in KDEF_YAW:
        raise FbenchError(f"synthetic image: unknown pose {pose!r}; choose from {list(KDEF_POSES)}")
    if lighting not in LIGHTINGS:
        raise FbenchError(f"synthetic image: unknown lighting {lighting!r}; choose from {list(LIGHTINGS)}")
    side = lighting == "side"
    u = rng.uniform
    az_degrees, el_degrees = u(-55, 55), u(0, 45)
    if side:  # from 62..84 degrees to one side, near eye level
        az_degrees, el_degrees = math.copysign(62 + 0.4 * abs(az_degrees), az_degrees), 0.4 * el_degrees - 5
    az, el = math.radians(az_degrees), math.radians(el_degrees)
    light = (math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el))
    grey = u(0.38, 0.82)
    tint = rng.normal(0, 0.03, size=3)
    background = _rgb(np.clip(grey * (1 + tint), 0.05, 1))
    # Expression intensity in 0.35..1, weighted toward the stronger end (KDEF's actors were asked to pose clearly).
    intensity = 0.0 if expression == "NE" else float(strength * (0.35 + 0.65 * math.sqrt(u())))
    n_au = len(AU_NAMES)
    gain = rng.uniform(0.75, 1.25, size=n_au)
    stray = np.where(rng.uniform(size=n_au) < 0.15, rng.uniform(0.0, 0.15, size=n_au), 0.0)
    yaw = float(KDEF_YAW[pose] + rng.normal(0, 1.5))
    pitch = float(np.clip(rng.normal(0, 2.5), -6, 6))
    roll = float(np.clip(rng.normal(0, 2.5), -6, 6))
    scale = float(u(0.92, 1.08))
    shift = (float(u(-0.04, 0.04)), float(u(-0.03, 0.03)))
    kelvin = float(u(3500, 8000))
    ambient, diffuse = float(u(0.25, 0.45)), float(u(0.5, 0.8))
    return Nuisance(
        yaw=yaw,
        pitch=pitch,
        roll=roll,
        scale=scale,
        shift=shift,
        light=light,
        light_colour=_rgb(_colour_temperature(2700 + 0.3 * (kelvin - 3500) if side else kelvin)),
        ambient=float(ambient * 0.45 if side else ambient),
        diffuse=float(diffuse + 0.2 if side else diffuse),
        background=background,
        bg_gradient=(float(u(-0.15, 0.15)), float(u(-0.2, 0.2))),
        vignette=float(u(0.0, 0.5)),
        noise=float(u(1.0, 4.0)),
        blur=float(u(0.4, 0.9)),
        intensity=intensity,
        au_gain=tuple(float(v) for v in gain),
        au_stray=tuple(float(v) for v in stray),
        noise_seed=int(rng.integers(2 ** 31)),
    )


def image_rng(seed: int, sex: str, number: int, session: int, expression: str, pose: str) -> np.random.Generator:
    """The generator of one image's nuisance: a pure function of who, when, which expression and which view."""
    key = SEXES.index(sex) * 1000 + number
    return np.random.default_rng(np.random.SeedSequence(
        [seed, 0x1A, key, session, KDEF_EXPRESSIONS.index(expression), KDEF_POSES.index(pose)]))


def expression_aus(identity: Identity, expression: str, nuisance: Nuisance) -> np.ndarray:
    """AU intensities of one image, ordered as ``fbench.data.synth.face.AU_NAMES``: the person's resting bias, the
    expression's AUs at the image's intensity, and stray activity."""
    recipe = EXPRESSION_AUS[expression]
    weights = np.array([recipe.get(au, 0.0) for au in AU_NAMES])
    a = np.asarray(identity.params["bias"]) + nuisance.intensity * weights * np.asarray(nuisance.au_gain) \
        + np.asarray(nuisance.au_stray)
    return np.clip(a, -0.4, 1.5 * max(1.0, nuisance.intensity))


class Rendered(NamedTuple):
    """One rendered face: the image (H x W x 3 uint8 RGB), landmarks (6 x 2 pixels, ordered as
    ``table.LANDMARKS``) and the visible face box (x0, y0, x1, y1 in pixels)."""

    image: np.ndarray
    landmarks: np.ndarray
    box: np.ndarray


def _base_scale(size: tuple[int, int]) -> float:
    h, w = size
    return _BASE_SCALE * min(w / _BASE_SIZE[1], h / _BASE_SIZE[0])


@lru_cache(maxsize=4)
def _model(identity: Identity, size: tuple[int, int]) -> FaceModel:
    scale = _base_scale(size)
    spacing = float(np.clip(2.9 / scale, 2.2, 5.0))
    texel = float(np.clip(0.8 / scale, 0.5, 3.0))
    return FaceModel(identity.params, spacing=spacing, texel=texel)


def render_face(identity: Identity, expression: str, pose: str, nuisance: Nuisance,
                size: tuple[int, int] = (320, 256)) -> Rendered:
    """Render ``identity`` showing ``expression`` (KDEF code) at ``pose`` (KDEF code) under ``nuisance``, at
    ``size`` (height, width). The pose's yaw comes from ``nuisance.yaw``; ``pose`` is checked against it."""
    import cv2

    if pose not in KDEF_YAW:
        raise FbenchError(f"synthetic image: unknown pose {pose!r}; choose from {list(KDEF_POSES)}")
    if expression not in EXPRESSION_AUS:
        raise FbenchError(f"synthetic image: unknown expression {expression!r}; choose from {list(KDEF_EXPRESSIONS)}")
    if abs(nuisance.yaw - KDEF_YAW[pose]) > 20:
        raise FbenchError(f"synthetic image: nuisance yaw {nuisance.yaw:.1f} does not match pose {pose}")
    h, w = int(size[0]), int(size[1])
    model = _model(identity, (h, w))
    base = _base_scale((h, w))
    scene = Scene(
        yaw=nuisance.yaw, pitch=nuisance.pitch, roll=nuisance.roll, scale=base * nuisance.scale,
        centre=(w * (0.5 + nuisance.shift[0]), h * (0.385 + nuisance.shift[1])),
        light=nuisance.light, light_colour=nuisance.light_colour, ambient=nuisance.ambient,
        diffuse=nuisance.diffuse, background=nuisance.background, bg_gradient=nuisance.bg_gradient,
        vignette=nuisance.vignette)
    img, landmarks, box = model.render(expression_aus(identity, expression, nuisance), scene, h, w)
    sigma = nuisance.blur * w / _BASE_SIZE[1]
    if sigma > 0.25:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    # Sensor noise, drawn at half resolution and interpolated (demosaicing correlates neighbouring pixels).
    rng = np.random.default_rng(nuisance.noise_seed)
    half = rng.standard_normal(size=((h + 1) // 2, (w + 1) // 2, 3), dtype=np.float32)
    noise = cv2.resize(half, (w, h), interpolation=cv2.INTER_LINEAR)
    img = img * np.float32(255.0) + noise * np.float32(1.6 * nuisance.noise)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return Rendered(image, landmarks, box)


def render_sample(seed: int, sex: str, number: int, session: int, expression: str, pose: str,
                  size: tuple[int, int] = (320, 256)) -> tuple[Rendered, Nuisance]:
    """The image of the synthetic set with these coordinates (what ``build_synthetic_kdef`` writes, before JPEG)."""
    identity = make_identity(seed, sex, number, session)
    nuisance = sample_nuisance(image_rng(seed, sex, number, session, expression, pose), expression, pose)
    return render_face(identity, expression, pose, nuisance, size), nuisance


# ------------------------------------------------------------------------------------------------- the builder
def _task(config: SynthConfig, out: str | None, sex: str, number: int, session: int
          ) -> tuple[list[dict[str, Any]], list[np.ndarray] | None]:
    """Render all images of one person in one session: write them as JPEGs under ``out`` (or keep them when
    ``out`` is None); return their manifest rows (and the images)."""
    import cv2

    cv2.setNumThreads(1)
    s = SESSIONS[session]
    folder = f"{s}{sex}{number:02d}"
    if out is not None:
        os.makedirs(os.path.join(out, folder), exist_ok=True)
    identity = make_identity(config.seed, sex, number, session)
    rows, images = [], []
    for expression in config.expressions:
        for pose in config.poses:
            nuisance = sample_nuisance(image_rng(config.seed, sex, number, session, expression, pose), expression,
                                       pose, config.expression_strength, config.lighting)
            image, landmarks, box = render_face(identity, expression, pose, nuisance, config.image_size)
            name = f"{folder}{expression}{pose}.JPG"
            if out is None:
                images.append(image)
            else:
                ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
                if not ok:
                    raise RuntimeError(f"JPEG encoding failed for {name}")
                with open(os.path.join(out, folder, name), "wb") as fh:
                    fh.write(data.tobytes())
            row: dict[str, Any] = {
                "path": f"{folder}/{name}", "subject": f"{sex}{number:02d}", "session": s, "sex": sex,
                "expression": expression, "label": EXPRESSION_LABELS[expression], "pose": pose,
                "yaw": round(nuisance.yaw, 3), "pitch": round(nuisance.pitch, 3), "roll": round(nuisance.roll, 3),
                "intensity": round(nuisance.intensity, 4),
            }
            for column, value in zip(BOX_COLUMNS, box):
                row[column] = round(float(value), 2)
            for i, column in enumerate(LANDMARK_COLUMNS):
                row[column] = round(float(landmarks[i // 2, i % 2]), 2)
            rows.append(row)
    _model.cache_clear()
    return rows, (images if out is None else None)


def _task_star(args: tuple) -> tuple[list[dict[str, Any]], list[np.ndarray] | None]:
    return _task(*args)


def _tasks(config: SynthConfig, out: str | None) -> list[tuple]:
    return [(config, out, sex, number, session)
            for session in range(config.sessions) for sex, number in config.subjects()]


def render_arrays(config: SynthConfig, workers: int | None = 1) -> tuple[np.ndarray, pd.DataFrame]:
    """Render ``config``'s set in memory, writing nothing: (images N x H x W x 3 uint8, manifest DataFrame), rows
    in manifest (path) order. Meant for small sets (tests, quick experiments): the default set takes 1.2 GB."""
    rows: list[dict[str, Any]] = []
    images: list[np.ndarray] = []
    for chunk_rows, chunk_images in _run(_tasks(config, None), _workers(workers)):
        rows.extend(chunk_rows)
        images.extend(chunk_images or [])
    frame = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    order = np.argsort(frame["path"].to_numpy(), kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    return np.stack([images[i] for i in order]), frame


def _workers(workers: int | None) -> int:
    return max(1, int(workers if workers is not None else (os.cpu_count() or 1)))


def _prepare(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder that is not an earlier synthetic build (unless ``overwrite``); clear what an
    earlier build wrote."""
    if out.exists() and not out.is_dir():
        raise FbenchError(f"synthetic set: {str(out)!r} is a file; give a folder path")
    entries = list(out.iterdir()) if out.exists() else []
    ours = False
    if (out / MARKER).is_file():
        try:
            ours = json.loads((out / MARKER).read_text()).get("generator") == GENERATOR
        except (OSError, ValueError):
            ours = False
    if entries and not ours and not overwrite:
        raise FbenchError(f"synthetic set: {str(out)!r} is not empty and holds no earlier synthetic build "
                          f"({MARKER}); choose an empty or new folder, or pass overwrite=True")
    if ours:
        for entry in entries:
            if entry.is_dir() and SUBJECT_DIR.match(entry.name) and all(
                    KDEF_NAME.match(f.name) for f in entry.iterdir()):
                shutil.rmtree(entry)
        for name in (MANIFEST, MARKER):
            if (out / name).exists():
                (out / name).unlink()
    out.mkdir(parents=True, exist_ok=True)


def _marker(config: SynthConfig, count: int | None) -> dict[str, Any]:
    return {"synthetic": True, "generator": GENERATOR, "version": VERSION, "seed": config.seed,
            "identities": config.identities, "sessions": config.sessions, "image_size": list(config.image_size),
            "count": count, "complete": count is not None,
            "poses": list(config.poses), "expressions": list(config.expressions),
            "expression_strength": config.expression_strength, "lighting": config.lighting,
            "note": "procedurally rendered; not real faces"}


def build_synthetic_kdef(out: Path, config: SynthConfig | None = None, workers: int | None = None,
                         progress: Callable[[int, int], None] | None = None, overwrite: bool = False
                         ) -> pd.DataFrame:
    """Render the synthetic set into ``out`` in KDEF's layout and return the manifest (a pandas DataFrame).

    ``workers``: processes (default ``os.cpu_count()``; 1 renders in this process). ``progress(done, total)`` is
    called after each person-session. Refuses a non-empty folder that is not an earlier synthetic build unless
    ``overwrite`` (which then writes over same-named files and leaves the rest)."""
    config = config or SynthConfig()
    out = Path(out)
    _prepare(out, overwrite)
    (out / MARKER).write_text(json.dumps(_marker(config, None), indent=2) + "\n")
    tasks = _tasks(config, str(out))
    total = len(tasks) * len(config.expressions) * len(config.poses)
    rows: list[dict[str, Any]] = []
    if progress:
        progress(0, total)
    for chunk, _ in _run(tasks, _workers(workers)):
        rows.extend(chunk)
        if progress:
            progress(len(rows), total)
    frame = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).sort_values("path").reset_index(drop=True)
    frame.to_csv(out / MANIFEST, index=False)
    (out / MARKER).write_text(json.dumps(_marker(config, len(frame)), indent=2) + "\n")
    return frame


def _run(tasks: list[tuple], workers: int) -> Iterable[tuple[list[dict[str, Any]], list[np.ndarray] | None]]:
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            yield _task(*task)
        return
    context = multiprocessing.get_context("spawn")
    # One thread per worker process for every native library: the workers are the parallelism.
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update({name: "1" for name in _THREAD_VARIABLES})
    # concurrent.futures, not multiprocessing.Pool: a worker that cannot start (a missing library) raises
    # BrokenProcessPool here instead of being respawned forever.
    try:
        pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context, initializer=_init_worker)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    with pool:
        futures = [pool.submit(_task_star, task) for task in tasks]
        for future in as_completed(futures):
            yield future.result()


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def read_manifest(root: Path) -> pd.DataFrame:
    """The manifest of a synthetic build (a pandas DataFrame), with a clear error when ``root`` is not one."""
    root = Path(root)
    if not (root / MARKER).is_file() or not (root / MANIFEST).is_file():
        raise FbenchError(f"{str(root)!r} is not a synthetic build (no {MARKER} / {MANIFEST}); "
                          f"build one with fbench.data.synth.build.build_synthetic_kdef")
    return pd.read_csv(root / MANIFEST)


# ------------------------------------------------------------------------------------------------- the preview
def preview_grid(out_png: Path, seed: int = 0, subject: tuple[str, int] = ("F", 1), session: int = 0,
                 size: tuple[int, int] = (320, 256), expressions: tuple[str, ...] = KDEF_EXPRESSIONS,
                 poses: tuple[str, ...] = KDEF_POSES, landmarks: bool = False) -> Path:
    """Write a PNG grid of one person's images: rows = expressions, columns = poses (optionally with landmarks and
    face boxes drawn)."""
    import cv2

    sex, number = subject
    rows = []
    for expression in expressions:
        row = []
        for pose in poses:
            (image, lm, box), _ = render_sample(seed, sex, number, session, expression, pose, size)
            image = np.ascontiguousarray(image[..., ::-1])
            if landmarks:
                if np.all(np.isfinite(box)):
                    cv2.rectangle(image, (int(box[0]), int(box[1])), (int(box[2]) - 1, int(box[3]) - 1),
                                  (0, 255, 0), 1)
                for x, y in lm:
                    cv2.circle(image, (int(round(x)), int(round(y))), 2, (0, 0, 255), -1)
            cv2.putText(image, f"{expression} {pose}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1)
            row.append(image)
        rows.append(np.concatenate(row, axis=1))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), np.concatenate(rows, axis=0))
    return out_png


__all__ = ["SynthConfig", "Identity", "Nuisance", "Rendered", "make_identity", "sample_nuisance", "image_rng",
           "expression_aus", "render_face", "render_sample", "build_synthetic_kdef", "render_arrays", "read_manifest",
           "preview_grid", "KDEF_EXPRESSIONS", "EXPRESSION_LABELS", "EXPRESSION_AUS", "MANIFEST_COLUMNS"]
