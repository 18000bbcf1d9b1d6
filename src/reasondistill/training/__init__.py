"""The trainer: every method's lifecycle, step-level loss normalisation, token-level KD, checkpoints.

- ``config``: ``TrainConfig`` (optimisation and KD settings);
- ``data``: features, truncation that never cuts an answer, padding, length grouping;
- ``objective``: one micro-batch's share of the step's loss (chunked token losses, KD);
- ``checkpoint``: full training state for exact ``--resume``;
- ``trainer``: the loop;
- ``teacher_logits``: ``save_teacher_logits`` for a method's layouts.
"""

from .config import TrainConfig
from .data import build_features, check_examples, collate, example_batches, length_grouped_batches, truncate
from .objective import TrainingModule, count_targets
from .trainer import train

__all__ = ["TrainConfig", "TrainingModule", "build_features", "check_examples", "collate", "count_targets", "example_batches",
           "length_grouped_batches", "train", "truncate"]
