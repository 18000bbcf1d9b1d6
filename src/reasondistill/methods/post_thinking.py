"""post_thinking (PT): ``question -> answer -> rationale`` with a weighted next-token loss.

The answer comes first, so inference stops at the end of the answer line: answers come many times
faster than with pre_thinking, and a hallucinated rationale cannot change an answer already
written. The rationale still trains the student (weight ``rationale_weight``), acting as an error
amplifier on examples whose answer the student gets wrong.
"""

from __future__ import annotations

from ..options import opt
from ..tasks import Example
from ..loss import Targets
from .base import ANSWER, EOS, PROMPT, RATIONALE, Feature, Method, format_question, token_weights


class PostThinking(Method):
    name = "post_thinking"
    answer_first = True
    token_layout = "post_thinking"
    packs = True
    class Options(Method.Options):
        answer_weight: float = opt(1.0, "weight of the answer tokens' cross-entropy", ge=0)
        rationale_weight: float = opt(0.5, "weight of the rationale tokens' cross-entropy (after the answer)", ge=0)

    def prompt(self, example: Example) -> str:
        return self.layout.prompt(format_question(example), "Answer:")

    def features(self, example: Example, tokenizer) -> list[Feature]:
        # The answer span ends with the newline: predicting it is how the student learns to stop.
        # Then the rationale: a think block after the answer for students that know think tags.
        if self.layout.think:
            rationale = [(self.layout.think_block(example.rationale), RATIONALE)]
        else:
            rationale = [("Rationale:", RATIONALE), (f" {example.rationale.strip()}", RATIONALE)]
        ids, spans = self.encode(tokenizer, [
            (self.prompt(example), PROMPT), (f" {example.answer}", ANSWER), ("\n", ANSWER),
            *rationale, (EOS, RATIONALE)])
        return [Feature(ids, spans)]

    def targets(self, batch):
        """``w_y·CE(answer) + w_r·CE(rationale)``, each span's mean over the step's tokens of it."""
        return Targets({"answer": token_weights(batch, ANSWER), "rationale": token_weights(batch, RATIONALE)},
                       {"answer": float(self.answer_weight), "rationale": float(self.rationale_weight)})
