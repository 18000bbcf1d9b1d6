"""answer_only: plain fine-tuning on ``question -> answer``; the baseline every method must beat."""

from __future__ import annotations

from ..tasks import Example
from .base import ANSWER, EOS, PROMPT, Feature, Method, format_question, span_losses


class AnswerOnly(Method):
    name = "answer_only"
    uses_rationale = False
    def prompt(self, example: Example) -> str:
        return self.layout.prompt(format_question(example), "Answer:")

    def features(self, example: Example, tokenizer) -> list[Feature]:
        ids, spans = self.encode(tokenizer, [(self.prompt(example), PROMPT),
                                             (f" {example.answer}", ANSWER), (EOS, ANSWER)])
        return [Feature(ids, spans)]

    def loss(self, model, batch):
        logits = self.run_model(model, batch).logits
        ce = span_losses(logits, batch)[ANSWER]
        return {"loss": ce, "ce_answer": ce}
