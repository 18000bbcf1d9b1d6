"""The trainer's settings: one typed definition with the other commands' options (``commands.py``),
token-level KD included (every method accepts a teacher). ``max_length`` never cuts an answer: a
longer sequence whose answer comes first loses the tail of its rationale, one whose answer comes
last is dropped (both counted in the run record)."""

from ..commands import TrainConfig

__all__ = ["TrainConfig"]
