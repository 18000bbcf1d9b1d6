"""How a teacher is asked for a rationale: zero-shot chain of thought in two stages, or few-shot.

Zero-shot (Kojima et al. style): stage one appends "Let's think step by step." to the question and
lets the teacher reason; stage two repeats all of that plus an answer trigger such as "Therefore,
the answer (arabic numerals) is" so the answer comes out in a form the parser reads reliably. The
rationale kept for training is stage one's text; the answer is parsed from stage two.

Few-shot: worked examples from a file (question, rationale, gold answer) precede the question, each
ending "The answer is X."; one stage, the answer is parsed from the teacher's own text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..tasks import Example, extract_answer, load_path

REASON_TRIGGER = "Let's think step by step."
# Stop before the teacher invents the next question (completion-style models do).
STOP = ["\nQ:"]


def question_block(example: Example) -> str:
    """``Q: question`` with the answer choices on one line, as the teacher sees it."""
    text = f"Q: {example.question.strip()}"
    if example.choices:
        text += "\nAnswer Choices: " + " ".join(f"({k}) {v}" for k, v in example.choices.items())
    return text


def answer_trigger(example: Example) -> str:
    """Stage two's trigger, worded so the teacher answers in the task's answer type."""
    if example.answer_type == "number":
        return "Therefore, the answer (arabic numerals) is"
    if example.answer_type == "choice":
        letters = sorted(example.choices) if example.choices else list("ABCDE")
        return f"Therefore, among {letters[0]} through {letters[-1]}, the answer is"
    if example.answer_type == "yesno":
        return "Therefore, the answer (Yes or No) is"
    return "Therefore, the answer is"


@dataclass
class Stage:
    """One teacher call of a prompting scheme: its prompt and what the scripted teacher writes."""

    prompt: str
    kind: str          # "rationale", "answer" (stage two) or "rationale+answer" (few-shot)
    max_tokens: int
    temperature: float
    stop: list[str] | None


class ZeroShotCoT:
    """Two stages: reason, then extract the answer with a typed trigger."""

    name = "zero-shot"
    two_stage = True

    def __init__(self, max_tokens: int = 256, answer_max_tokens: int = 32) -> None:
        self.max_tokens, self.answer_max_tokens = max_tokens, answer_max_tokens

    def reasoning(self, example: Example, temperature: float) -> Stage:
        return Stage(f"{question_block(example)}\nA: {REASON_TRIGGER}", "rationale", self.max_tokens,
                     temperature, STOP)

    def answering(self, example: Example, reasoning_prompt: str, rationale: str) -> Stage:
        # Greedy: the answer should follow from this sample's rationale, not be sampled again.
        prompt = f"{reasoning_prompt} {rationale.strip()}\n{answer_trigger(example)}"
        return Stage(prompt, "answer", self.answer_max_tokens, 0.0, None)

    def parse(self, example: Example, rationale: str, answer_text: str | None) -> tuple[str | None, str]:
        """(teacher answer, the answer line it was read from)."""
        line = f"{answer_trigger(example)} {(answer_text or '').strip()}"
        return extract_answer(line, example.answer_type, example.choices), line


class FewShotCoT:
    """Worked examples, then the question; one stage."""

    name = "few-shot"
    two_stage = False

    def __init__(self, shots: list[Example], max_tokens: int = 256) -> None:
        if not shots:
            raise UserError("few-shot prompting needs at least one example with a rationale")
        self.shots, self.max_tokens = shots, max_tokens
        self.header = "".join(f"{question_block(s)}\nA: {s.rationale.strip()} The answer is {s.answer}.\n\n"
                              for s in shots)

    @classmethod
    def from_file(cls, path: str | Path, k: int | None = None, max_tokens: int = 256) -> "FewShotCoT":
        """The first ``k`` examples of ``path`` (any loadable format) that carry a rationale."""
        shots = [ex for ex in load_path(str(path)) if ex.rationale]
        if not shots:
            raise UserError("no example with a rationale to use as a few-shot demonstration", path=str(path))
        if k is not None and k < 1:
            raise UserError(f"--shots must be at least 1, got {k}")
        return cls(shots[:k] if k else shots, max_tokens)

    def reasoning(self, example: Example, temperature: float) -> Stage:
        return Stage(f"{self.header}{question_block(example)}\nA:", "rationale+answer", self.max_tokens,
                     temperature, STOP)

    def parse(self, example: Example, rationale: str, answer_text: str | None) -> tuple[str | None, str]:
        return extract_answer(rationale, example.answer_type, example.choices), ""
