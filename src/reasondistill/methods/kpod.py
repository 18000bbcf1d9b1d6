"""kpod (keypoint-based progressive distillation): pre-thinking with a smarter rationale loss.

The sequence is pre-thinking's (``question -> rationale -> answer``, one next-token loss) and so is
inference. Two things change what the student learns from the rationale; this file is our reading
of the recipe in METHODS.md.

1. Keypoint token weights, learnt by masking (``prepare``, once, before the student trains).
   Not every rationale token matters equally: "has 4 - 1 = 3" carries the reasoning, "she gives
   away" is filler. To find out which tokens matter without hand rules:
   - an *answer model* A learns to predict the answer's tokens from the rationale's tokens
     (frozen student embeddings, attention pooling over the tokens it is shown, candidates scored
     by similarity to the pooled vector), with random tokens masked so it copes with masked input;
     then A is frozen. A masked token is simply absent for A, so nothing but the kept tokens (not
     even the rationale's length) can tell it the answer;
   - a *mask network* M (frozen embeddings -> a small convolution over neighbours -> one logit per
     token) learns which tokens to keep: A must still recover the answer from the kept tokens,
     while a sparsity penalty (the mean keep probability) pushes the kept set to be small.
     Keep/drop is sampled with a Gumbel-sigmoid and a straight-through hard threshold, so the
     masking is discrete but trainable;
   - M's keep probabilities ``p``, normalised per rationale, become the token weights of the
     student's loss: ``w = floor + (1 - floor) * p``, divided by its mean over the rationale.
     Keypoints weigh up to ``1 / floor`` times more than dropped tokens, and no token weighs zero,
     so the student still learns to write the whole rationale.
2. In-rationale progressive distillation (``targets``, ``observe`` and ``on_step``). The rationale
   is split into steps (sentences or lines). A question whose schedule says ``k`` gets steps 2 .. n - k
   as input only and learns to generate the last ``k`` steps and the answer; ``k`` starts at
   ``start_steps`` and grows until every question generates its whole rationale (by
   ``progressive_until`` of training). At each of ``schedule_updates`` updates a budget of
   one-step increments is handed out by a greedy value function: a question's value is the ease
   of its next step (its difficulty, the student's keypoint-weighted token loss on that step as
   training measures it, scaled so the easiest is 1 and the hardest 0) plus ``diversity_weight``
   times its distance to the questions already picked in this update (so each stage covers
   varied questions, not one kind).
   One departure from the recipe, on purpose: the rationale's first step (and the answer with its
   marker) is learnt from the start. The student writes from the prompt at inference, so what it
   writes first must be learnt first; without it an early student skips the rationale and its
   marker altogether (see ``targets``).

Visible in the run: ``metrics.jsonl`` logs ``kept_fraction`` (share of rationale tokens the mask
keeps), ``mean_k`` and ``generated_fraction``; ``kpod_schedule.json`` holds the mask training curve
and k at every schedule update; ``kpod_weights.jsonl`` the per-token weights of training
rationales (``reasondistill inspect-weights RUN_DIR`` prints them).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..io import atomic_write_json, atomic_write_jsonl
from ..options import opt
from ..runfolder import WEIGHTS_FILE
from ..tasks import Example
from ..loss import Targets
from .base import ANSWER, PROMPT, RATIONALE, Feature
from .kpod_mask import AnswerModel, MaskNetwork, answer_nll
from .pre_thinking import ANSWER_MARKER, PreThinking

SCHEDULE_FILE = "kpod_schedule.json"
STEP_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")  # a sentence end followed by space, or a line break


def split_steps(rationale: str) -> list[str]:
    """The rationale as steps whose concatenation is ``" " + rationale.strip()``: each step keeps
    the whitespace before it, so tokenising step by step matches the text the student reads."""
    text = " " + rationale.strip()
    starts = [0] + [m.start() for m in STEP_BREAK.finditer(text) if 0 < m.start() and m.end() < len(text)]
    return [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)]) if text[a:b].strip()]


class KPOD(PreThinking):
    name = "kpod"
    chat_layout = False  # its own token layout (steps, weights): plain text only
    token_layout = "kpod"  # its own tokenisation step by step, known only after prepare()
    packs = False  # per-sequence fields (example index, step counts) in every batch
    class Options(PreThinking.Options):
        weight_floor: float = opt(0.5, "token weight of a dropped token (keypoints weigh up to 1/floor more)",
                                  ge=0, le=1)
        sparsity: float = opt(0.5, "mask network: weight of the penalty on the share of tokens kept", ge=0)
        mask_steps: int = opt(300, "training steps of the mask network", ge=0)
        answer_model_steps: int = opt(300, "training steps of the answer model the mask is judged by", ge=0)
        mask_dim: int = opt(64, "hidden width of the mask network and the answer model", ge=1)
        mask_batch_size: int = opt(32, "rationales per step of the mask and answer models", ge=1)
        answer_lr: float = opt(1e-2, "learning rate of the answer model", gt=0)
        mask_lr: float = opt(3e-3, "learning rate of the mask network", gt=0)
        temperature: float = opt(0.5, "Gumbel-sigmoid temperature of the keep/drop sampling", gt=0)
        start_steps: int = opt(1, "rationale steps every question generates at first", ge=1)
        schedule_updates: int = opt(4, "how many times the progressive schedule hands out more steps", ge=1)
        progressive_until: float = opt(0.5, "share of training after which every question generates its whole "
                                       "rationale", ge=0, le=1)
        diversity_weight: float = opt(0.5, "schedule: weight of a question's distance to those already picked", ge=0)
        mask_seed: int = opt(0, "seed of the mask and answer models")
    max_len = 512  # rationale tokens the mask network reads; later tokens get the mean weight

    def __init__(self, **options) -> None:
        super().__init__(**options)
        if not 0.0 <= self.weight_floor <= 1.0:
            raise UserError(f"kpod: weight_floor must be between 0 and 1, not {self.weight_floor}")
        if not 0.0 <= self.progressive_until <= 1.0:
            raise UserError(f"kpod: progressive_until must be between 0 and 1, not {self.progressive_until}")
        if int(self.start_steps) < 1 or int(self.schedule_updates) < 1:
            raise UserError("kpod: start_steps and schedule_updates must be at least 1")
        self.index: dict[tuple, int] = {}
        self.pieces: list[tuple[list[int], list[list[int]], list[int]]] = []  # prompt, steps, answer ids
        self.token_weights: list[list[float]] = []
        self.keep_probs: list[list[float]] = []
        self.kept: list[float] = []
        self.mask_log: list[dict] = []
        self.schedule_log: list[dict] = []

    # ----- features -------------------------------------------------------------------------------
    def _encode(self, ex: Example, tokenizer) -> tuple[list[int], list[list[int]], list[int]]:
        def ids(text: str) -> list[int]:
            return tokenizer(text, add_special_tokens=False).input_ids

        steps = [ids(s) for s in split_steps(ex.rationale)]
        answer = ids(ANSWER_MARKER) + ids(f" {ex.answer}") + [tokenizer.eos_token_id]
        return ids(self.prompt(ex)), [s for s in steps if s], answer

    def features(self, example: Example, tokenizer) -> list[Feature]:
        key = _key(example)
        if key not in self.index:
            raise RuntimeError(f"kpod: example {example.id!r} was not seen by prepare(), which weighs its tokens")
        i = self.index[key]
        prompt, steps, answer = self.pieces[i]
        rationale = [t for s in steps for t in s]
        step_ids = [0] * len(prompt) + [n + 1 for n, s in enumerate(steps) for _ in s] + [0] * len(answer)
        spans = [PROMPT] * len(prompt) + [RATIONALE] * len(rationale) + [ANSWER] * len(answer)
        weights = [1.0] * len(prompt) + self.token_weights[i] + [1.0] * len(answer)
        extras = {"step_ids": step_ids, "example_index": i, "n_steps": len(steps), "kept_fraction": self.kept[i]}
        return [Feature(prompt + rationale + answer, spans, weights, extras)]

    # ----- 1. keypoint weights by mask learning ---------------------------------------------------
    def prepare(self, examples: list[Example], tokenizer, model) -> None:
        for ex in examples:
            if _key(ex) not in self.index:
                self.index[_key(ex)] = len(self.pieces)
                self.pieces.append(self._encode(ex, tokenizer))
        unique = {i: ex for ex in examples for i in [self.index[_key(ex)]]}
        self.examples = [unique[i] for i in range(len(self.pieces))]
        embedding = model.get_input_embeddings()
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

        def embed(ids: torch.Tensor) -> torch.Tensor:
            """Frozen student embeddings, layer-normalised (a fresh tiny student's are tiny)."""
            with torch.no_grad():
                e = embedding(ids.to(embedding.weight.device)).float().to(device)
                return F.layer_norm(e, e.shape[-1:])

        rationales = [[t for s in steps for t in s][:self.max_len] for _, steps, _ in self.pieces]
        ids, pad = _pad(rationales, 0)
        # The answer model chooses among the tokens answers use; targets are positions in that list.
        answer_ids = [tokenizer(f" {ex.answer}", add_special_tokens=False).input_ids or [tokenizer.eos_token_id]
                      for ex in self.examples]
        vocab = sorted({t for a in answer_ids for t in a})
        slot = {t: i for i, t in enumerate(vocab)}
        answers, _ = _pad([[slot[t] for t in a] for a in answer_ids], -1)
        threads = torch.get_num_threads()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.mask_seed)
            # The mask nets are tiny: on a CPU, more threads only add synchronisation (often 5x slower).
            torch.set_num_threads(1 if device.type == "cpu" else threads)
            try:
                probs = self._learn_mask(embed, ids, pad, answers.to(device), embed(torch.tensor(vocab)), device)
            finally:
                torch.set_num_threads(threads)
            questions = [p for p, _, _ in self.pieces]
            qids, qpad = _pad(questions, 0)
            qemb = torch.cat([(embed(qids[i:i + 64]) * (~qpad[i:i + 64]).unsqueeze(-1).to(device)).sum(1).cpu()
                              for i in range(0, len(qids), 64)])
            self.question_vectors = F.normalize(qemb, dim=-1)
        self.token_weights, self.keep_probs, self.kept = [], [], []
        for n, (_, steps, _) in enumerate(self.pieces):
            total = sum(len(s) for s in steps)
            p = probs[n, :min(total, self.max_len)]
            p = torch.cat([p, p.mean().expand(total - len(p))]) if total > len(p) else p
            self.keep_probs.append([round(float(x), 4) for x in p])
            self.kept.append(float((p > 0.5).float().mean()) if total else 0.0)
            w = self.weight_floor + (1 - self.weight_floor) * p
            w = w / w.mean().clamp(min=1e-6)
            self.token_weights.append([round(float(x), 4) for x in w])
        self._init_schedule()

    def _learn_mask(self, embed, ids: torch.Tensor, pad: torch.Tensor, answers: torch.Tensor,
                    answer_emb: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Train the answer model, then the mask network against it; keep probabilities (N, T)."""
        answer_model = AnswerModel(answer_emb.size(1), self.mask_dim, self.max_len, answer_emb).to(device)
        mask_net = MaskNetwork(answer_emb.size(1), self.mask_dim, self.max_len).to(device)
        n, bs = len(ids), min(self.mask_batch_size, len(ids))
        pad = pad.to(device)
        self.mask_log = []

        def batch():
            pick = torch.randint(0, n, (bs,))
            width = int((~pad[pick]).sum(1).max().clamp(min=1))
            return embed(ids[pick, :width]), pad[pick, :width], answers[pick]

        opt = torch.optim.Adam(answer_model.parameters(), lr=self.answer_lr)
        for step in range(1, int(self.answer_model_steps) + 1):
            emb, bpad, ans = batch()
            # Random masking at random rates, so A can read the masked rationales M will show it.
            rate = torch.rand(bs, 1, device=device) * 0.5 + 0.5
            keep = ((torch.rand(bpad.shape, device=device) < rate) & ~bpad).float()
            loss = answer_nll(answer_model(emb, bpad, keep), ans).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 25 == 0 or step == self.answer_model_steps:
                self.mask_log.append({"stage": "answer_model", "step": step, "answer_nll": round(loss.item(), 4)})
        answer_model.requires_grad_(False)

        opt = torch.optim.Adam(mask_net.parameters(), lr=self.mask_lr)
        for step in range(1, int(self.mask_steps) + 1):
            emb, bpad, ans = batch()
            logits = mask_net(emb, bpad)
            u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
            soft = torch.sigmoid((logits + u.log() - (-u).log1p()) / self.temperature)
            keep = ((soft > 0.5).float() - soft).detach() + soft  # hard forward, soft gradient
            keep = keep.masked_fill(bpad, 0.0)
            nll = answer_nll(answer_model(emb, bpad, keep), ans).mean()
            real = (~bpad).float()
            density = (torch.sigmoid(logits) * real).sum() / real.sum()
            loss = nll + self.sparsity * density
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 25 == 0 or step == self.mask_steps:
                kept = float((keep.detach() * real).sum() / real.sum())
                self.mask_log.append({"stage": "mask", "step": step, "answer_nll": round(nll.item(), 4),
                                      "kept_fraction": round(kept, 4)})
        mask_net.eval()
        with torch.no_grad():
            return torch.cat([torch.sigmoid(mask_net(embed(ids[i:i + 64]), pad[i:i + 64])).cpu()
                              for i in range(0, n, 64)])

    # ----- 2. in-rationale progressive distillation -----------------------------------------------
    def _init_schedule(self) -> None:
        self.n_steps = torch.tensor([len(steps) for _, steps, _ in self.pieces])
        self.k = self.n_steps.clamp(max=int(self.start_steps))
        self.difficulty = torch.full((len(self.pieces), int(self.n_steps.max().clamp(min=1))), float("nan"))
        self.updates_done = 0
        self.schedule_log = [self._schedule_row(0)]

    def _schedule_row(self, step: int) -> dict:
        frac = (self.k / self.n_steps.clamp(min=1)).float()
        return {"step": step, "update": self.updates_done, "mean_k": round(float(self.k.float().mean()), 4),
                "mean_steps": round(float(self.n_steps.float().mean()), 4),
                "generated_fraction": round(float(frac.mean()), 4),
                "full_fraction": round(float((self.k >= self.n_steps).float().mean()), 4)}

    def on_step(self, step: int, max_steps: int) -> None:
        """Apply every schedule update due by ``step`` (several at once after a resume)."""
        updates = int(self.schedule_updates)
        while self.updates_done < updates:
            due = math.ceil(self.progressive_until * max_steps * (self.updates_done + 1) / updates)
            if step < due:
                break
            self.updates_done += 1
            if self.updates_done == updates:
                self.k = self.n_steps.clone()
            else:
                self._grow(math.ceil(int((self.n_steps - self.k).sum()) / (updates - self.updates_done + 1)))
            self.schedule_log.append(self._schedule_row(step))

    def _grow(self, budget: int) -> None:
        """Hand out ``budget`` one-step increments of k, greedily by value = ease of the question's
        next step + diversity_weight * its distance to the questions already picked this update."""
        q = self.question_vectors
        while budget > 0:
            todo = (self.k < self.n_steps).nonzero().flatten()
            if len(todo) == 0:
                return
            # The next step a question must learn to generate is step n - k (1-based).
            nxt = self.difficulty[todo, (self.n_steps[todo] - self.k[todo] - 1)]
            known = nxt[~nxt.isnan()]
            nxt = torch.where(nxt.isnan(), known.median() if len(known) else torch.tensor(0.0), nxt)
            ease = 1 - (nxt - nxt.min()) / (nxt.max() - nxt.min()).clamp(min=1e-6)  # 1 = easiest
            distance = torch.ones(len(todo))
            free = torch.ones(len(todo), dtype=torch.bool)
            for _ in range(min(budget, len(todo))):
                value = (ease + self.diversity_weight * distance).masked_fill(~free, float("-inf"))
                j = int(value.argmax())
                free[j] = False
                self.k[todo[j]] += 1
                budget -= 1
                distance = torch.minimum(distance, (1 - q[todo] @ q[todo[j]]) / 2)

    def _record_difficulty(self, ce: torch.Tensor, weights: torch.Tensor, steps: torch.Tensor,
                           index: torch.Tensor) -> None:
        """Running (EMA) keypoint-weighted token loss of every (question, step) in the batch."""
        n, width = self.difficulty.shape
        real = steps > 0
        slot = (index.unsqueeze(1) * width + (steps - 1).clamp(min=0))[real].cpu()
        loss = torch.zeros(n * width).index_add_(0, slot, (ce * weights)[real].float().cpu())
        mass = torch.zeros(n * width).index_add_(0, slot, weights[real].float().cpu())
        seen = mass > 0
        new = loss[seen] / mass[seen]
        flat = self.difficulty.view(-1)
        old = flat[seen]
        flat[seen] = torch.where(old.isnan(), new, 0.5 * old + 0.5 * new)

    def learnt(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Which next tokens are learnt now (B, T-1), and each row's k: the answer (its marker
        included), the rationale's first step, and the last k steps; the steps between are input only.

        The first step is always learnt because it is what the student writes right after the
        prompt at inference; k grows from the end towards it. Left untrained while k < n, the
        position after ``Rationale:`` copied what follows the colon the student had learnt, the
        answer marker's: a kpod student answered " yes" at once, with no rationale and no marker,
        so nothing could be parsed (0 of 100 answered on coin flips after 60 steps). Learning only
        the first token was not enough (still 0 of 100): a whole opening step is."""
        spans, steps = batch["spans"][:, 1:], batch["step_ids"][:, 1:]
        k = self.k[batch["example_index"].cpu()].to(spans.device)
        in_rationale = steps > 0
        opening = steps == 1
        given = in_rationale & (steps <= (batch["n_steps"] - k).unsqueeze(1)) & ~opening
        return ((spans == ANSWER) | (spans == RATIONALE)) & ~given, k

    def targets(self, batch):
        """One keypoint-weighted next-token loss over the tokens learnt now; every rationale token's
        loss is observed (the difficulty of steps still given decides who grows next)."""
        learnt, _ = self.learnt(batch)
        weights = batch["weights"][:, 1:] * learnt
        return Targets({"target": weights}, {"target": 1.0}, observe=batch["step_ids"][:, 1:] > 0)

    def observe(self, batch, ce):
        self._record_difficulty(ce, batch["weights"][:, 1:], batch["step_ids"][:, 1:], batch["example_index"])
        _, k = self.learnt(batch)
        frac = (k.float() / batch["n_steps"].clamp(min=1).float()).mean()
        return {"kept_fraction": batch["kept_fraction"].float().mean(), "mean_k": k.float().mean(),
                "generated_fraction": frac}

    def state_dict(self) -> dict:
        """The schedule: k per question, the measured difficulties, the updates done so far."""
        return {"k": self.k.tolist(), "difficulty": self.difficulty.tolist(), "updates_done": self.updates_done,
                "schedule_log": list(self.schedule_log)}

    def load_state_dict(self, state: dict) -> None:
        self.k = torch.tensor(state["k"], dtype=self.k.dtype)
        self.difficulty = torch.tensor(state["difficulty"], dtype=self.difficulty.dtype)
        self.updates_done = int(state["updates_done"])
        self.schedule_log = list(state["schedule_log"])

    def run_info(self) -> dict:
        return {"kpod": {"kept_fraction": round(sum(self.kept) / max(len(self.kept), 1), 4),
                         "schedule_updates_done": self.updates_done}} if self.kept else {}

    # ----- saving -----------------------------------------------------------------------------------
    def save(self, out_dir, model, tokenizer) -> None:
        """The student (pre-thinking at inference), plus the mask's token weights and the schedule."""
        super().save(out_dir, model, tokenizer)
        out_dir = Path(out_dir)
        rows = []
        for i, ex in enumerate(self.examples[:1000]):  # enough to inspect; keeps the run folder small
            _, steps, _ = self.pieces[i]
            ids = [t for s in steps for t in s]
            rows.append({"id": ex.id, "question": ex.question, "answer": ex.answer,
                         "tokens": [tokenizer.decode([t]) for t in ids], "weights": self.token_weights[i],
                         "keep_probs": self.keep_probs[i],
                         "steps": [n + 1 for n, s in enumerate(steps) for _ in s],
                         "kept_fraction": round(self.kept[i], 4)})
        atomic_write_jsonl(out_dir / WEIGHTS_FILE, rows)
        atomic_write_json(out_dir / SCHEDULE_FILE, {"mask_training": self.mask_log, "schedule": self.schedule_log})


def _key(ex: Example) -> tuple:
    return (ex.id, ex.question, ex.rationale, ex.answer)


def _pad(rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, pad mask) right-padded to the longest row (at least 1 wide)."""
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    pad = torch.ones((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        pad[i, :len(r)] = False
    return ids, pad
