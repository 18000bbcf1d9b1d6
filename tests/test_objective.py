"""The training objective: step-level normalisation and the chunked LM-head path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import micro_setup

from reasondistill.loss import lm_head, token_losses
from reasondistill.methods import get_method
from reasondistill.training import TrainingModule, build_features, collate, count_targets


def step_gradients(method, model, batches) -> dict[str, torch.Tensor]:
    """One optimiser step's gradient, accumulated over ``batches`` as the trainer does."""
    module = TrainingModule(model, method)
    module.train()
    module.zero_grad()
    totals = count_targets(method, batches)
    for batch in batches:
        module(batch, totals)["loss"].backward()
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name,options", [
    ("pre_thinking", {}),
    ("post_thinking", {"answer_weight": 1.0, "rationale_weight": 0.3}),
    ("pst", {"encoder": "student", "alignment": "cosine", "rationale_weight": 0.2, "pooling": "attention"}),
])
def test_batch_8_equals_batch_2_times_accumulation_4(name, options):
    examples, model, tok = micro_setup(n=8)
    method = get_method(name, **options)
    method.prepare(examples, tok, model)
    if name == "pst":  # a non-zero query, so attention pooling is not a plain mean
        torch.nn.init.normal_(method.projection.query)
    features = build_features(method, examples, tok, 512)
    features.sort(key=lambda f: len(f.input_ids))  # micro-batches of very different target counts
    pad = tok.pad_token_id
    whole = step_gradients(method, model, [collate(features, pad)])
    micro = [collate(features[i:i + 2], pad) for i in range(0, 8, 2)]
    counts = [float(method.targets(b).counts()["tokens:" + ("target" if name == "pre_thinking" else "rationale")])
              for b in micro]
    assert max(counts) > 1.3 * min(counts), counts  # a per-micro-batch mean would weigh these alike
    split = step_gradients(method, model, micro)
    assert whole.keys() == split.keys() and len(whole) > 3
    for key in whole:
        assert torch.allclose(whole[key], split[key], atol=1e-5, rtol=1e-4), (key, (whole[key] - split[key]).abs().max())


def test_each_process_scales_its_share_by_the_process_count():
    """DDP averages gradients: with totals counted over all processes, scale = process count."""
    examples, model, tok = micro_setup(n=4)
    method = get_method("post_thinking")
    batch = collate(build_features(method, examples, tok, 512), tok.pad_token_id)
    module = TrainingModule(model, method)
    totals = count_targets(method, [batch])
    one = module(batch, totals)["loss"].detach()
    two = module(batch, {k: 2 * v for k, v in totals.items()}, scale=2.0)["loss"].detach()
    assert float(two) == pytest.approx(float(one), rel=1e-6)


def plain_loss(model, batch, weights):
    """The reference: full logits, float cross-entropy at every position, weighted sum."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    ce = F.cross_entropy(logits.transpose(1, 2), batch["input_ids"][:, 1:], reduction="none")
    return (ce * weights).sum() / weights.sum()


def test_chunked_head_equals_the_plain_formula_in_loss_and_gradients():
    examples, model, tok = micro_setup(n=6)
    method = get_method("post_thinking")
    batch = collate(build_features(method, examples, tok, 512), tok.pad_token_id)
    weights = method.targets(batch).tokens["rationale"] * 0.3 + method.targets(batch).tokens["answer"]
    weights = weights * torch.rand(weights.shape, generator=torch.Generator().manual_seed(0))
    model.zero_grad()
    want = plain_loss(model, batch, weights)
    want.backward()
    want_grads = [p.grad.clone() for p in model.parameters()]

    split = lm_head(model)  # (its one-off check runs the head on a probe; not counted below)
    seen = []
    head = model.get_output_embeddings()
    hook = head.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    model.zero_grad()
    positions = weights != 0
    hidden = split.body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    ce, _ = token_losses(split, hidden, positions, batch["input_ids"], chunk_tokens=7)
    got = (weights[positions] * ce).sum() / weights.sum()
    got.backward()
    hook.remove()
    assert not split.plain
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    for a, p in zip(want_grads, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6, rtol=1e-4)
    # The head only ever saw chunks of at most 7 target rows (forward and recompute), never a prompt row.
    assert seen and max(seen) <= 7 and sum(seen) == 2 * int(positions.sum())


def test_soft_capped_heads_and_unknown_heads_stay_exact():
    """gemma-2 soft-caps its logits: the split head applies the cap. A model whose forward changes
    the logits in a way the split does not know falls back to full logits, still exact."""
    from transformers import Gemma2Config, Gemma2ForCausalLM
    config = Gemma2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=16, final_logit_softcapping=3.0)
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config)
    ids = torch.randint(0, 97, (2, 9))
    mask = torch.ones_like(ids)
    head = lm_head(model)
    assert not head.plain and head.softcap == 3.0
    want = model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(head.logits(head.body(input_ids=ids, attention_mask=mask)), want, atol=1e-5)

    class Doubled(Gemma2ForCausalLM):  # an architecture whose forward scales logits unannounced
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 2
            return out

    torch.manual_seed(0)
    odd = Doubled(config)
    fallback = lm_head(odd)
    assert fallback.plain
    assert torch.allclose(fallback.logits(fallback.body(input_ids=ids, attention_mask=mask)),
                          odd(input_ids=ids, attention_mask=mask).logits)
