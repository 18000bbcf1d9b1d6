"""answer_only: plain fine-tuning on ``question -> answer``; the baseline every method must beat."""

from __future__ import annotations

from ..tasks import Example
from ..loss import Targets
from .base import ANSWER, EOS, PROMPT, Feature, Method, format_question, token_weights


class AnswerOnly(Method):
    name = "answer_only"
    uses_rationale = False
    token_layout = "answer_only"
    packs = True
    def prompt(self, example: Example) -> str:
        return self.layout.prompt(format_question(example), "Answer:")

    def features(self, example: Example, tokenizer) -> list[Feature]:
        ids, spans = self.encode(tokenizer, [(self.prompt(example), PROMPT),
                                             (f" {example.answer}", ANSWER), (EOS, ANSWER)])
        return [Feature(ids, spans)]

    def targets(self, batch):
        return Targets({"answer": token_weights(batch, ANSWER)}, {"answer": 1.0})
