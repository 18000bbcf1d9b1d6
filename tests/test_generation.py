"""The one decoder: stop rules end decoding at the answer line (also for a tokenizer that cannot
write a newline), budget forcing writes the answer marker after N thinking tokens, finished rows
leave the batch, and slices resume exactly. A scripted LM (next token = a table of the last token)
makes every expected sequence exact."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from helpers import micro_setup
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import nn
from transformers import PreTrainedTokenizerFast

from reasondistill.generation import Row, decode
from reasondistill.methods import get_method
from reasondistill.tasks import Example

WORDS = ["[PAD]", "[EOS]", "Question:", "yes", "Rationale:", "because", "Answer:", "[UNK]", "Rationale"]


def word_tokenizer() -> PreTrainedTokenizerFast:
    """Whole words split on whitespace, like an uncased WordPiece: no token can hold a newline."""
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", eos_token="[EOS]", unk_token="[UNK]")


class _Cache:
    def batch_select_indices(self, index) -> None:
        pass


class ScriptedLM(nn.Module):
    """Its next token is ``table[last token]`` (eos for anything else). Counts forward passes."""

    def __init__(self, table: dict[int, int], vocab: int, eos: int, sequence: list[int] | None = None) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 4)
        self.table, self.vocab, self.eos, self.calls = table, vocab, eos, 0
        self.sequence = sequence  # instead of the table: the k-th forward pass writes sequence[k]

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None, cache=None,
                use_cache=True):
        self.calls += 1
        assert input_ids is not None or inputs_embeds is not None
        last = input_ids[:, -1].tolist() if input_ids is not None else [self.table["embeds"]] * inputs_embeds.size(0)
        width = (input_ids if input_ids is not None else inputs_embeds).size(1)
        logits = torch.zeros(len(last), width, self.vocab)
        for b, t in enumerate(last):
            nxt = self.sequence[min(self.calls - 1, len(self.sequence) - 1)] if self.sequence else self.table.get(t, self.eos)
            logits[b, -1, nxt] = 1.0
        return SimpleNamespace(logits=logits, cache=cache or _Cache())


def scripted(tok, pairs: dict[str, str]) -> ScriptedLM:
    v = tok.get_vocab()
    return ScriptedLM({v[a]: v[b] for a, b in pairs.items()}, len(v), tok.eos_token_id)


def test_answer_line_ends_decoding_even_without_a_newline_token():
    tok = word_tokenizer()
    rule = get_method("post_thinking").row_rules(tok)["answer_end"]
    assert not rule.ids and "Rationale" in rule.strings  # the fallback: the next marker, as it decodes
    lm = scripted(tok, {"Question:": "yes", "yes": "Rationale:", "Rationale:": "because", "because": "because"})
    row = Row(tok("Question:").input_ids, 40, answer_end=rule)
    decode(lm, tok, [row])
    assert row.answer_text.strip() == "yes" and len(row.generated) == 2 and row.finish_reason == "stop"
    explained = Row(tok("Question:").input_ids, 40, answer_end=rule, explain=True)
    decode(lm, tok, [explained])  # with the rationale wanted, decoding goes on; the answer time is kept
    assert explained.answer_tokens == 2 and len(explained.generated) == 40
    assert 0 < explained.seconds_to_answer < explained.seconds


def test_post_thinking_stops_at_the_newline_token():
    examples, _, tok = micro_setup(n=8)
    method = get_method("post_thinking")
    ids = tok(" yes\nRationale: because", add_special_tokens=False).input_ids
    lm = ScriptedLM({}, len(tok), tok.eos_token_id, sequence=ids)
    [row] = method.rows(lm, tok, examples[:1], max_new_tokens=30, explain=False)
    decode(lm, tok, [row])
    assert row.text == " yes\n" and row.answer_text == " yes"
    [pred] = method.predictions([row], examples[:1])
    assert pred.answer == "yes" and pred.tokens_to_answer == pred.tokens_total == len(row.generated)


@pytest.mark.parametrize("budget", [0, 3])
def test_budget_forcing_writes_the_answer_marker_after_n_thinking_tokens(budget):
    tok = word_tokenizer()
    lm = scripted(tok, {"Question:": "because", "because": "because", "Answer:": "yes", "yes": "[EOS]"})
    method = get_method("pre_thinking")
    example = Example(id="q", question="", answer="yes", answer_type="yesno")
    rules = method.row_rules(tok, think_budget=budget)
    row = Row(tok("Question:").input_ids, 50, **rules)
    decode(lm, tok, [row])
    words = tok.convert_ids_to_tokens(row.generated)
    assert words == ["because"] * budget + ["Answer:", "yes", "[EOS]"], words
    [pred] = method.predictions([row], [example])
    assert pred.answer == "yes" and pred.extras["forced_answer"] is True
    unlimited = Row(tok("Question:").input_ids, 50, **method.row_rules(tok))
    decode(lm, tok, [unlimited])
    assert unlimited.finish_reason == "length" and method.predictions([unlimited], [example])[0].answer is None


def test_finished_rows_leave_the_batch_and_slices_resume_exactly():
    tok = word_tokenizer()
    lm = scripted(tok, {"Question:": "because", "because": "because", "yes": "[EOS]"})
    short = Row(tok("yes").input_ids, 30)
    long = Row(tok("Question:").input_ids, 30)
    decode(lm, tok, [short, long], max_steps=5)
    assert short.done and len(short.generated) == 1 and not long.done and len(long.generated) == 5
    decode(lm, tok, [short, long])  # the next slice re-reads the prompt and the tokens so far
    assert long.done and long.generated == [long.generated[0]] * 30 and long.finish_reason == "length"
