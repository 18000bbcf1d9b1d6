"""Every method trains a few steps on a micro student with a falling loss, and answers."""

from __future__ import annotations

import pytest
import torch

from reasondistill.evaluation import evaluate
from reasondistill.methods import ANSWER, CORE_METHODS, PROMPT, RATIONALE, get_method
from reasondistill.training import TrainConfig, train
from reasondistill.errors import UserError

from helpers import MICRO_TRAIN, logged_losses, micro_setup


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each core method trained once (40 steps, micro student); shared by the tests below."""
    runs = {}
    for name in CORE_METHODS:
        examples, model, tok = micro_setup()
        method = get_method(name, **({"encoder": "student"} if name == "pst" else {}))
        out = tmp_path_factory.mktemp(name)
        summary = train(method, model, tok, examples, out, TrainConfig(**MICRO_TRAIN), tiny=True, progress=False)
        runs[name] = (method, model, tok, examples, out, summary)
    return runs


@pytest.mark.parametrize("name", CORE_METHODS)
def test_loss_falls_and_method_answers(trained, name):
    method, model, tok, examples, out, summary = trained[name]
    losses = logged_losses(out)
    assert summary["steps"] == MICRO_TRAIN["max_steps"]
    assert losses[-1] < 0.7 * losses[0], losses
    metrics = evaluate(method, model, tok, examples[:16], max_new_tokens=80, progress=False)
    assert metrics["n"] == 16
    assert metrics["answered"] >= 0.5  # a yes/no was parsed from most outputs
    assert metrics["tokens_to_answer"] > 0


def test_answer_first_methods_stop_early(trained):
    """PT and PST write the answer line and stop; pre_thinking writes its rationale first."""
    cost = {}
    for name in ("pre_thinking", "post_thinking", "pst"):
        method, model, tok, examples, *_ = trained[name]
        cost[name] = evaluate(method, model, tok, examples[:16], max_new_tokens=80, progress=False)
    assert cost["post_thinking"]["tokens_to_answer"] < 0.5 * cost["pre_thinking"]["tokens_to_answer"]
    assert cost["pst"]["tokens_to_answer"] < 0.5 * cost["pre_thinking"]["tokens_to_answer"]
    # With explain on, the rationale still comes after the answer: tokens to the end exceed those to the answer.
    assert cost["post_thinking"]["tokens_total"] > cost["post_thinking"]["tokens_to_answer"]


def test_span_layout_of_each_method():
    examples, _, tok = micro_setup(n=4)
    ex = examples[0]
    layouts = {name: get_method(name).features(ex, tok) for name in ("answer_only", "pre_thinking", "post_thinking")}
    [ao] = layouts["answer_only"]
    assert RATIONALE not in ao.spans and ao.spans[-1] == ANSWER and ao.input_ids[-1] == tok.eos_token_id
    [pre] = layouts["pre_thinking"]
    first_answer, first_rationale = pre.spans.index(ANSWER), pre.spans.index(RATIONALE)
    assert first_rationale < first_answer  # rationale, then answer
    [post] = layouts["post_thinking"]
    assert post.spans.index(ANSWER) < post.spans.index(RATIONALE)  # answer, then rationale
    assert tok.decode(post.input_ids[post.spans.index(RATIONALE) - 1]) == "\n"  # the answer ends at the newline
    prefix = get_method("prefix").features(ex, tok)
    assert len(prefix) == 2 and {s for f in prefix for s in f.spans} == {PROMPT, ANSWER, RATIONALE}


def test_pst_alignment_loss_falls(trained):
    *_, out, _ = trained["pst"]
    align = logged_losses(out, "align")
    assert align[-1] < align[0]


def test_pst_alignment_gradient_reaches_the_student():
    """The alignment term alone, backpropagated, moves the student's own layers (not only the
    projection): PST shapes the student's rationale states. Fails if the states are detached."""
    from reasondistill.training import collate
    examples, model, tok = micro_setup(n=8)
    method = get_method("pst", encoder="student")
    method.prepare(examples, tok, model)
    batch = collate([f for ex in examples for f in method.features(ex, tok)], tok.pad_token_id)
    model.train()
    model.zero_grad(set_to_none=True)
    method.loss(model, batch).sequences["align"].mean().backward()
    layer = model.get_decoder().layers[-1]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.mlp.parameters())
    assert all(p.grad is not None for p in method.projection.parameters())


def test_pst_with_packaged_minilm_targets():
    """The default encoder: the packaged all-MiniLM-L6-v2, loaded offline, 384-d targets."""
    examples, model, tok = micro_setup(n=8)
    method = get_method("pst")
    method.prepare(examples, tok, model)
    assert method.embeddings.shape == (len({e.rationale for e in examples}), 384)
    sims = method.embeddings @ method.embeddings.T
    assert torch.allclose(sims.diagonal(), torch.ones(len(sims)), atol=1e-4)


def test_masked_thought_masks_only_rationale_inputs():
    examples, model, tok = micro_setup(n=4)
    method = get_method("pre_thinking", mask_rationale=0.5)
    from reasondistill.training import collate
    batch = collate([f for ex in examples for f in method.features(ex, tok)], tok.pad_token_id)
    model.train()
    ids = method.forward_inputs(model, batch)["input_ids"]
    changed = ids != batch["input_ids"]
    assert changed.any()
    assert (batch["spans"][changed] == RATIONALE).all()


def test_unknown_method_and_option_are_user_errors():
    with pytest.raises(UserError, match="unknown method"):
        get_method("magic")
    with pytest.raises(UserError, match="unknown option"):
        get_method("post_thinking", answer_wieght=2)
