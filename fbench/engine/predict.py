"""Inference: logits for a set of images, optionally under a perturbation, and the per-sample predictions frame."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from fbench.contract import ArchitectureSpec
from fbench.data.transforms import normalize, to_float
from fbench.engine.distributed import active_plan
from fbench.engine.runtime import Amp, autocast, batch_format, use_amp, use_channels_last
from fbench.errors import FbenchError
from fbench.perturb.apply import apply_condition, resolve_condition
from fbench.suite.conditions import CLEAN, is_clean


def predict_logits(model: nn.Module, images_uint8: torch.Tensor, spec: ArchitectureSpec, *,
                   device: torch.device | str, batch_size: int = 512, condition: str | None = None,
                   landmarks: torch.Tensor | None = None, sample_ids: Sequence[str] | None = None,
                   poses: Sequence[str] | None = None, seed: int = 0, amp: Amp = "auto",
                   channels_last: bool = True) -> torch.Tensor:
    """Logits (N x K float32, on the CPU) of ``model`` in eval mode for ``images_uint8`` (N x C x H x W).

    Each batch is moved to ``device``, scaled to [0, 1], perturbed with ``condition`` (e.g.
    ``"mask:kind=surgical"``; None or ``"clean"`` for none) and normalised with the spec's mean/std. The
    perturbation's draws depend on each sample's id and ``seed``, never on the batch, so the logits do not
    depend on ``batch_size``. bf16 autocast and channels_last apply on CUDA only.

    Under torchrun (an active ``fbench.engine.distributed`` plan) each rank computes every N-th batch and the
    batches are gathered in order: every rank returns the complete logits, as one process computes them."""
    device = torch.device(device)
    if not isinstance(images_uint8, torch.Tensor) or images_uint8.dim() != 4:
        raise FbenchError("predict_logits needs images as an N x C x H x W uint8 tensor")
    n = images_uint8.shape[0]
    perturbation = None if is_clean(condition) else condition
    ids: Sequence[str] = ()
    if perturbation is not None:
        if sample_ids is None or len(sample_ids) != n:
            raise FbenchError(f"condition {condition!r} needs one sample id per image (the perturbation's draws are "
                              f"keyed by sample id); got {None if sample_ids is None else len(sample_ids)} for {n}")
        ids = sample_ids
        resolve_condition(perturbation)  # fail on a bad condition before any work
    amp_on = use_amp(amp, device)
    cl = use_channels_last(channels_last, device)
    was_training = model.training
    model.eval()
    outputs = []
    starts = range(0, n, batch_size)
    plan = active_plan()
    try:
        with torch.inference_mode():
            for begin in (starts if plan is None else [starts[i] for i in plan.my_batches(len(starts))]):
                end = min(n, begin + batch_size)
                batch = to_float(images_uint8[begin:end].to(device, non_blocking=True))
                if perturbation is not None:
                    batch = apply_condition(
                        perturbation, batch,
                        landmarks[begin:end].to(device) if landmarks is not None else None,
                        list(ids[begin:end]), seed,
                        list(poses[begin:end]) if poses is not None else None)
                batch = batch_format(normalize(batch, spec.mean, spec.std), cl)
                with autocast(device, amp_on):
                    outputs.append(model(batch).float())
    finally:
        model.train(was_training)
    if plan is not None:
        outputs = plan.gather_batches(outputs, len(starts))
    if not outputs:
        return torch.empty(0, 0)
    return torch.cat(outputs).cpu()


def predictions_frame(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | Sequence[int],
                      sample_ids: Sequence[str], condition: str | None,
                      poses: Sequence[str] | None = None, subjects: Sequence[str] | None = None) -> pd.DataFrame:
    """The per-sample predictions that ``fbench.score.metrics`` consumes: columns ``condition``, ``sample_id``,
    ``label``, ``pred`` (argmax), ``pose``, ``subject`` ("" where unknown) and ``logit_0 .. logit_{K-1}``."""
    scores = logits.detach().float().cpu().numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits)
    true = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    n = len(sample_ids)
    if scores.ndim != 2 or scores.shape[0] != n or true.shape != (n,):
        raise FbenchError(f"predictions_frame: logits {scores.shape}, labels {true.shape} and {n} sample ids "
                          "do not line up; give N x K logits and N labels for N samples")
    for name, values in (("poses", poses), ("subjects", subjects)):
        if values is not None and len(values) != n:
            raise FbenchError(f"predictions_frame: {len(values)} {name} for {n} samples")
    frame = pd.DataFrame({
        "condition": CLEAN if condition is None else str(condition),
        "sample_id": [str(s) for s in sample_ids],
        "label": true.astype(np.int64),
        "pred": scores.argmax(axis=1).astype(np.int64) if scores.shape[1] else np.zeros(n, np.int64),
        "pose": [str(p) for p in poses] if poses is not None else "",
        "subject": [str(s) for s in subjects] if subjects is not None else "",
    })
    logit_columns = pd.DataFrame(scores.astype(np.float32), columns=[f"logit_{k}" for k in range(scores.shape[1])])
    return pd.concat([frame, logit_columns], axis=1)
