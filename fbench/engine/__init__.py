"""The training and inference engine: recipe -> optimiser and schedule, the training loop, predictions.

``train_model`` trains one model on one cell's training split, selecting and stopping on its validation split
(the API takes no test data); ``predict_logits`` and ``predictions_frame`` produce the per-sample predictions
that every metric is computed from.
"""

from fbench.engine.checkpoint import load_state, save_state
from fbench.engine.errors import NonFiniteLossError
from fbench.engine.loop import TrainResult, TrainSettings, evaluation_sums, selection_monitor, train_model
from fbench.engine.optim import Scheduler, build_optimizer, build_scheduler, param_groups, scheduler_step
from fbench.engine.predict import predict_logits, predictions_frame
from fbench.engine.tensors import EvalData, TrainData

__all__ = [
    "EvalData",
    "NonFiniteLossError",
    "Scheduler",
    "TrainData",
    "TrainResult",
    "TrainSettings",
    "build_optimizer",
    "build_scheduler",
    "evaluation_sums",
    "load_state",
    "param_groups",
    "predict_logits",
    "predictions_frame",
    "save_state",
    "scheduler_step",
    "selection_monitor",
    "train_model",
]
