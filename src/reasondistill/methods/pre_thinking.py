"""pre_thinking (Fine-tune-CoT): ``question -> rationale -> answer`` with one next-token loss.

The student must write the whole rationale before it can state the answer, so time to answer
includes the rationale, and a rationale that goes astray drags the answer with it.
"""

from __future__ import annotations

from ..tasks import Example, extract_answer
from ..layout import THINK_CLOSE, THINK_OPEN
from .base import ANSWER, EOS, PROMPT, RATIONALE, Feature, Method, format_question

ANSWER_MARKER = "\nAnswer:"


class PreThinking(Method):
    name = "pre_thinking"
    token_layout = "pre_thinking"  # one next-token loss over rationale and answer: the default targets
    packs = True
    answer_marker = ANSWER_MARKER  # a thinking budget forces it

    def prompt(self, example: Example) -> str:
        return self.layout.prompt(format_question(example), "" if self.layout.think else "Rationale:")

    def features(self, example: Example, tokenizer) -> list[Feature]:
        if self.layout.think:  # a think block, then the answer after it
            target = [(self.layout.think_block(example.rationale), RATIONALE), (f"\n\n{example.answer}", ANSWER)]
        else:
            target = [(f" {example.rationale.strip()}", RATIONALE), (ANSWER_MARKER, ANSWER),
                      (f" {example.answer}", ANSWER)]
        ids, spans = self.encode(tokenizer, [(self.prompt(example), PROMPT), *target, (EOS, ANSWER)])
        return [Feature(ids, spans)]

    def parse(self, text: str, example: Example):
        if self.layout.think:
            if THINK_CLOSE not in text:  # the think block never closed: no answer
                return None, text.replace(THINK_OPEN, "").strip()
            thought, _, tail = text.partition(THINK_CLOSE)
            return extract_answer(tail.strip(), example.answer_type, example.choices), \
                thought.replace(THINK_OPEN, "").strip()
        rationale, marker, tail = text.rpartition(ANSWER_MARKER.strip())
        if not marker:  # the student never reached the answer line
            return None, text.strip()
        return extract_answer(tail.strip(), example.answer_type, example.choices), rationale.strip()
