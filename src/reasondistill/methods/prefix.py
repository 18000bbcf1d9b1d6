"""prefix (distilling step-by-step): one student, two tasks told apart by a prefix.

``[answer] question -> answer`` and ``[rationale] question -> rationale`` train together; at inference
only the answer task runs, so answers are as fast as answer_only while the rationale task shapes the
shared weights. Each example costs two sequences (two forward passes) in training.
"""

from __future__ import annotations

from ..options import opt
from ..tasks import Example
from ..loss import Targets
from .base import ANSWER, EOS, PROMPT, RATIONALE, Feature, Method, format_question, token_weights


class Prefix(Method):
    name = "prefix"
    token_layout = "prefix"
    packs = True
    batch_examples_together = True  # both tasks in every step, whatever length grouping does
    class Options(Method.Options):
        rationale_weight: float = opt(1.0, "weight of the [rationale] task's loss beside the [answer] task", ge=0)

    def prompt(self, example: Example) -> str:
        return self.layout.prompt("[answer] " + format_question(example), "Answer:")

    def features(self, example: Example, tokenizer) -> list[Feature]:
        answer_ids, answer_spans = self.encode(tokenizer, [
            (self.prompt(example), PROMPT), (f" {example.answer}", ANSWER), (EOS, ANSWER)])
        think = self.layout.think
        rationale = self.layout.think_block(example.rationale) if think else f" {example.rationale.strip()}"
        rationale_ids, rationale_spans = self.encode(tokenizer, [
            (self.layout.prompt("[rationale] " + format_question(example), "" if think else "Rationale:"), PROMPT),
            (rationale, RATIONALE), (EOS, RATIONALE)])
        return [Feature(answer_ids, answer_spans), Feature(rationale_ids, rationale_spans)]

    def targets(self, batch):
        """The two tasks' mean losses, each over its own tokens of the step."""
        return Targets({"answer": token_weights(batch, ANSWER), "rationale": token_weights(batch, RATIONALE)},
                       {"answer": 1.0, "rationale": float(self.rationale_weight)})
