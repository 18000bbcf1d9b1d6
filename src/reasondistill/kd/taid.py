"""TAID's interpolation weight ``t`` (the paper's defaults: START, END, ALPHA, MOMENTUM)."""

from __future__ import annotations

import math

TAID_START, TAID_END, TAID_ALPHA, TAID_MOMENTUM = 0.4, 1.0, 5e-4, 0.99


class TAIDSchedule:
    """Never below the linear ramp START→END over training, pushed up faster by
    ``ALPHA·sigmoid(m)·(1−t)`` where ``m`` is a momentum average of the objective's relative decrease
    (the objective is the cross-entropy of the student against the interpolated target, recorded once
    per optimiser step): the target moves towards the teacher as fast as the student keeps up."""

    def __init__(self, start: float = TAID_START, end: float = TAID_END, alpha: float = TAID_ALPHA,
                 momentum: float = TAID_MOMENTUM) -> None:
        self.start, self.end, self.alpha, self.beta = start, end, alpha, momentum
        self.t, self.m, self.previous = start, 0.0, None
        self._values: list[float] = []

    def record(self, value: float) -> None:
        self._values.append(value)

    def step(self, step: int, max_steps: int) -> None:
        if not self._values:
            return
        value = sum(self._values) / len(self._values)
        self._values = []
        if self.previous is not None:
            delta = (self.previous - value) / (abs(self.previous) + 1e-8)
            self.m = self.beta * self.m + (1 - self.beta) * delta
        self.previous = value
        linear = self.start + (self.end - self.start) * min(1.0, step / max(1, max_steps))
        adaptive = self.t + self.alpha * (1 / (1 + math.exp(-self.m))) * (1 - self.t)
        self.t = min(self.end, max(linear, adaptive))

    def state_dict(self) -> dict:
        """What --resume needs to continue the schedule exactly."""
        return {"t": self.t, "m": self.m, "previous": self.previous, "values": list(self._values)}

    def load_state_dict(self, state: dict) -> None:
        self.t, self.m, self.previous = state["t"], state["m"], state["previous"]
        self._values = list(state.get("values", []))
