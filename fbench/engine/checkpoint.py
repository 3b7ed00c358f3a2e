"""Checkpoints on disk, written atomically and read back with ``weights_only=True``: the best epoch's weights
(:func:`save_state`, :func:`load_state`) and the resume checkpoint (:class:`ResumeCheckpoint`).

The resume checkpoint holds everything the training loop carries from one epoch to the next: the model's and the
optimiser's state, the LR scheduler's, the best-epoch tracker (early stopping), the epoch history, the best weights
when they are held in memory, and every random stream the loop draws from (torch's CPU and CUDA generators,
numpy's and Python's global ones, and the loop's own sampler and augmentation generators). It is written at the
end of every epoch, so that an interrupted training continues with the next epoch and ends exactly as an
uninterrupted one would (on the CPU: the same weights, history and predictions). It carries a format version and
a fingerprint of the training's configuration: a checkpoint of another configuration, another format, or a
truncated or damaged file is never used (the loop says so and starts from epoch 1).

The state is copied to host memory on the loop's thread (the model goes on changing); serialising and writing it
(about a second for hundreds of MB) happen on a writer thread while the next epoch trains.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fbench.data.files import write_atomic
from fbench.errors import FbenchError

RESUME_FORMAT = 1
RESUME_KEYS = ("format", "fingerprint", "epoch", "saved", "model", "optimizer", "scheduler", "scaler", "tracker",
               "history", "best_state", "rng")
TRACKER_FIELDS = ("best", "best_epoch", "wait")  # what of a BestTracker changes during training


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``model.state_dict()``."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _write_tensors(value: Any, path: str | os.PathLike) -> Path:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return write_atomic(path, buffer.getvalue())


def save_state(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model``'s state dict to ``path`` atomically: a crash never leaves a half-written checkpoint."""
    return _write_tensors(cpu_state(model), path)


def load_state(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load the state dict at ``path`` into ``model`` (tensors only: ``weights_only=True``)."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FbenchError(f"checkpoint {path} does not exist") from None
    model.load_state_dict(state)
    return model


# ------------------------------------------------------------------------------------------ resume checkpoint


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (tuple, set, frozenset, torch.Size)):
        return list(value)
    return repr(value)


def fingerprint(parts: Mapping[str, Any]) -> str:
    """A short stable hash of ``parts`` (dataclasses, mappings, sequences, numbers, strings): what a resume
    checkpoint must have been written under to be used."""
    text = json.dumps({"format": RESUME_FORMAT, **parts}, sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def host_copy(value: Any) -> Any:
    """``value`` (nested dicts, lists and tuples of tensors and plain values) with every tensor copied to the CPU
    and numpy scalars made Python numbers (so that it loads with ``weights_only=True``)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: host_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(host_copy(v) for v in value)
    return value


def rng_state(generators: Mapping[str, torch.Generator], device: torch.device) -> dict[str, Any]:
    """Every random stream training draws from: torch's CPU generator (and ``device``'s CUDA generator), numpy's
    and Python's global generators, and ``generators`` (the loop's own) by name."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "position": int(position), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
        "generators": {key: generator.get_state() for key, generator in generators.items()},
    }


def set_rng_state(state: Mapping[str, Any], generators: Mapping[str, torch.Generator], device: torch.device
                  ) -> None:
    """Put back what :func:`rng_state` recorded."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for key, generator in generators.items():
        generator.set_state(state["generators"][key])


class _Writer:
    """One write at a time on a background thread; :meth:`wait` joins it and raises what it raised. The thread
    is not a daemon: a process that exits (SIGTERM included) finishes the write first."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, job: Callable[[], None]) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(job,), name="fbench-checkpoint-writer")
        self._thread.start()

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as error:  # handed to the loop's thread by wait()
            self._error = error

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


_WRITER = _Writer()  # one per process: a resume checkpoint is never read while it is being written


def wait_for_writes() -> None:
    """Block until the resume checkpoint being written in the background, if any, is on disk."""
    _WRITER.wait()


def remove_resume(path: str | os.PathLike[str]) -> None:
    """Delete the resume checkpoint at ``path`` once any write still in flight has ended (a training that
    finished, or failed, needs it no more)."""
    try:
        _WRITER.wait()
    finally:
        Path(path).unlink(missing_ok=True)


@dataclass
class Resumed:
    """What a resume checkpoint restored: the last finished epoch, when it was written, the epoch history, and
    the best weights held in memory (None when they are the model's own or on disk)."""

    epoch: int
    saved: float
    history: list[dict[str, Any]]
    best_state: dict[str, torch.Tensor] | None

    def describe(self, epochs: int, stopped: bool = False) -> str:
        """``resuming from epoch 4 of 8 (checkpoint of epoch 3, 12:01:33)``; ``stopped``: early stopping had
        ended the training at that epoch."""
        when = time.localtime(self.saved)
        stamp = time.strftime("%H:%M:%S" if when[:3] == time.localtime()[:3] else "%Y-%m-%d %H:%M:%S", when)
        if self.epoch >= epochs or stopped:
            how = "stopped early" if stopped else "finished"
            return f"resuming from epoch {self.epoch} of {epochs}: training had {how} (checkpoint of {stamp})"
        return f"resuming from epoch {self.epoch + 1} of {epochs} (checkpoint of epoch {self.epoch}, {stamp})"


class ResumeCheckpoint:
    """The resume checkpoint at ``path`` of one training run: :meth:`save` at the end of every epoch, :meth:`load`
    at the start. ``key`` is the :func:`fingerprint` of the training's configuration; ``generators`` the loop's
    own random streams, by name; ``device`` the training device (its CUDA generator is kept)."""

    def __init__(self, path: str | os.PathLike[str], key: str, generators: Mapping[str, torch.Generator],
                 device: torch.device) -> None:
        self.path = Path(path)
        self.key = key
        self.generators = dict(generators)
        self.device = torch.device(device)
        self._held: dict[tuple[Any, ...], torch.Tensor] = {}  # host buffers reused from epoch to epoch

    def _stage(self, value: Any, where: tuple[Any, ...] = ()) -> Any:
        """``value`` with every tensor copied into this checkpoint's host buffer for its place (allocated once,
        pinned for CUDA tensors, so that each epoch's copy neither faults pages in nor waits on pageable memory)
        and numpy scalars made Python numbers."""
        if isinstance(value, torch.Tensor):
            held = self._held.get(where)
            if held is None or held.shape != value.shape or held.dtype != value.dtype:
                held = torch.empty(value.shape, dtype=value.dtype, pin_memory=value.is_cuda)
                self._held[where] = held
            held.copy_(value.detach(), non_blocking=value.is_cuda)
            return held
        if isinstance(value, dict):
            return {k: self._stage(v, (*where, k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._stage(v, (*where, i)) for i, v in enumerate(value))
        if isinstance(value, np.generic):
            return value.item()
        return value

    def save(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any | None,
             tracker: Any, history: list[dict[str, Any]], best_state: dict[str, torch.Tensor] | None = None,
             best_path: str | os.PathLike[str] | None = None) -> None:
        """Record the state after ``epoch``: copied to host memory now, written by the writer thread (the previous
        write is waited for first: its buffers are reused). With ``best_path``, the model's weights are then written
        there too (the new best epoch), after the resume checkpoint, from the same copy."""
        _WRITER.wait()
        staged = self._stage({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict() if scheduler is not None else None})
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the non-blocking copies have landed
        weights = staged["model"]
        payload = {
            "format": RESUME_FORMAT, "fingerprint": self.key, "epoch": int(epoch), "saved": time.time(),
            "model": weights, "optimizer": staged["optimizer"], "scheduler": staged["scheduler"],
            "scaler": None,  # bf16 autocast needs no loss scaling, so there is no GradScaler to keep
            "tracker": {name: getattr(tracker, name) for name in TRACKER_FIELDS},
            "history": host_copy([dict(record) for record in history]),
            "best_state": host_copy(best_state) if best_state is not None else None,
            "rng": rng_state(self.generators, self.device),
        }

        def write() -> None:
            _write_tensors(payload, self.path)
            if best_path is not None:
                _write_tensors(weights, best_path)

        _WRITER.submit(write)

    def flush(self) -> None:
        """Wait for the last write (raises what it raised, e.g. a full disk's FbenchError)."""
        _WRITER.wait()

    def remove(self) -> None:
        """Delete the checkpoint (after the last write)."""
        remove_resume(self.path)

    def _read(self, model: nn.Module) -> tuple[dict[str, Any] | None, str]:
        """The verified payload, else None and why it cannot be used."""
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:  # any unpickling or zip failure: a truncated or damaged file
            first = (str(error).strip().splitlines() or [""])[0][:160]
            return None, f"unreadable, truncated or damaged ({type(error).__name__}: {first})"
        if not isinstance(payload, dict):
            return None, "not a resume checkpoint"
        missing = [key for key in RESUME_KEYS if key not in payload]
        if missing:
            return None, f"not a resume checkpoint (no {', '.join(missing)})"
        if payload["format"] != RESUME_FORMAT:
            return None, f"format {payload['format']}, this fbench reads format {RESUME_FORMAT}"
        if payload["fingerprint"] != self.key:
            return None, "written for another configuration (its fingerprint differs)"
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        stored = payload["model"]
        if not isinstance(stored, dict) or {k: tuple(v.shape) for k, v in stored.items()} != expected:
            return None, "its weights do not match the model's parameters"
        epoch = payload["epoch"]
        if not isinstance(epoch, int) or epoch < 1 or len(payload["history"]) != epoch:
            return None, "its epoch and history disagree"
        return payload, ""

    def load(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any | None, tracker: Any,
             note: Callable[[str], None] = lambda text: None) -> Resumed | None:
        """Restore the training state from the checkpoint, if there is a usable one: the model, optimiser,
        scheduler and tracker in place, and every random stream. None when there is no checkpoint; a checkpoint
        that cannot be used is deleted, and ``note`` gets one line naming it and why."""
        _WRITER.wait()  # a write of this process still in flight (an interrupted run in the same process)
        if not self.path.is_file():
            return None
        payload, problem = self._read(model)
        if payload is None:
            note(f"{self.path}: {problem}; starting the cell from epoch 1")
            self.path.unlink(missing_ok=True)
            return None
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        if scheduler is not None and payload["scheduler"] is not None:
            scheduler.load_state_dict(payload["scheduler"])
        for name in TRACKER_FIELDS:
            setattr(tracker, name, payload["tracker"][name])
        set_rng_state(payload["rng"], self.generators, self.device)
        return Resumed(payload["epoch"], float(payload["saved"]), list(payload["history"]), payload["best_state"])
