"""Token-level KD settings: which teacher, which divergence, how much. Trainer options, accepted with
every method whose sequences the teacher can read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import UserError

KD_LOSSES = ("forward_kl", "reverse_kl", "jsd", "taid")


@dataclass
class KDConfig:
    """``teacher_model`` (an open model, online) or ``teacher_logits`` (a file of stored top-k
    log-probabilities) turns KD on; the rest shape the term."""

    teacher_model: str | None = None
    teacher_logits: str | None = None
    kd_loss: str = "forward_kl"
    kd_weight: float = 1.0
    kd_temperature: float = 1.0
    kd_beta: float = 0.5

    @property
    def enabled(self) -> bool:
        return bool(self.teacher_model or self.teacher_logits)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "KDConfig":
        """Checked settings from the given keys (others keep their defaults). Fails early on a setting
        that cannot work: unknown loss, bad numbers, or KD settings without a teacher (they would
        silently do nothing)."""
        config = cls(**{k: v for k, v in options.items() if v is not None})
        if config.kd_loss not in KD_LOSSES:
            raise UserError(f"kd_loss must be one of {', '.join(KD_LOSSES)}, not '{config.kd_loss}'")
        if not float(config.kd_temperature) > 0:
            raise UserError(f"kd_temperature must be > 0, not {config.kd_temperature}")
        if not float(config.kd_weight) >= 0:
            raise UserError(f"kd_weight must be >= 0, not {config.kd_weight}")
        if not 0 < float(config.kd_beta) < 1:
            raise UserError(f"kd_beta must be strictly between 0 and 1, not {config.kd_beta}")
        default = cls()
        tuned = [k for k in ("kd_loss", "kd_weight", "kd_temperature", "kd_beta")
                 if getattr(config, k) != getattr(default, k)]
        if tuned and not config.enabled:
            raise UserError(f"{', '.join(tuned)} needs a teacher (--teacher-model ID_OR_PATH or --teacher-logits FILE)")
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
