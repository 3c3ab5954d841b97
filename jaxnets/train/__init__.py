"""Training engine: TrainState, compiled steps and epochs, fit/evaluate, callbacks."""

from jaxnets.train.callbacks import Callback, EarlyStopping, JSONLLogger, ProgressBar
from jaxnets.train.ensemble import (
    EnsembleHistory,
    ensemble_accuracy,
    ensemble_probabilities,
    evaluate_ensemble,
    init_ensemble,
    train_ensemble,
)
from jaxnets.train.loop import FitResult, NonFiniteLossError, evaluate, fit
from jaxnets.train.objective import batch_loss, model_outputs
from jaxnets.train.state import TrainState
from jaxnets.train.step import Trainer

__all__ = [
    "Callback",
    "EarlyStopping",
    "EnsembleHistory",
    "FitResult",
    "JSONLLogger",
    "NonFiniteLossError",
    "ProgressBar",
    "TrainState",
    "Trainer",
    "batch_loss",
    "ensemble_accuracy",
    "ensemble_probabilities",
    "evaluate",
    "evaluate_ensemble",
    "fit",
    "init_ensemble",
    "model_outputs",
    "train_ensemble",
]
