"""``reasondistill eval --server URL``: evaluate a student behind any OpenAI-compatible server.

vLLM, SGLang, llama.cpp or our own ``serve``: the questions go out as streaming requests, so the
time to answer is measured when the answer line is complete (answer-first methods) and the time to
the end when the stream ends, with the same scoring and the same metrics.json as local ``eval``.
Big students get a fast engine's speed without this package depending on one.

What is sent follows the layout the student was trained with:
- our ``serve`` (its ``/v1/models`` entry names the method): the question, which the server wraps
  in the student's own prompt;
- another server with a chat-layout student: a chat request whose user turn is the question block,
  which the server renders with the student's template, as training did;
- a plain-text student (``--model RUN`` says so): a completion request with the method's prompt.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .errors import UserError
from .evaluation import score, write_results
from .io import atomic_write_json
from .layout import Layout
from .methods import Method, Prediction, format_question, get_method
from .runfolder import read_record
from .tasks import Example, extract_answer, load_task


def _get_json(client, url: str) -> dict:
    import httpx
    try:
        response = client.get(url)
    except httpx.HTTPError as e:
        raise UserError(f"cannot reach the server at {url}: {e}") from None
    if response.status_code != 200:
        raise UserError(f"{url} answered {response.status_code}: {response.text[:200]}")
    return response.json()


def served_entry(client, base: str, name: str | None) -> dict:
    """The ``/v1/models`` entry of ``name`` (or of the only model served)."""
    models = _get_json(client, f"{base}/models").get("data") or []
    ids = [m.get("id") for m in models]
    if name is None:
        if len(models) != 1:
            raise UserError(f"the server serves {len(models)} models ({', '.join(map(str, ids))}); "
                            "name one with --served-model")
        return models[0]
    for m in models:
        if m.get("id") == name:
            return m
    raise UserError(f"the server does not serve '{name}'; it serves: {', '.join(map(str, ids)) or 'nothing'}")


def stream(client, url: str, body: dict, answer_first: bool) -> tuple[str, int, int, float, float]:
    """One streaming request: (text, chunks to the answer, chunks in all, seconds to the answer,
    seconds in all). The answer is complete at the first newline after some text (answer-first)
    or at the end of the stream."""
    import httpx
    text, chunks, chunks_to_answer, answered_at = "", 0, None, None
    started = time.perf_counter()
    try:
        with client.stream("POST", url, json={**body, "stream": True}) as response:
            if response.status_code != 200:
                raise UserError(f"{url} answered {response.status_code}: {response.read().decode()[:200]}")
            for line in response.iter_lines():
                if not line.startswith("data:") or line.strip() == "data: [DONE]":
                    continue
                event = json.loads(line[5:])
                if "error" in event:
                    raise UserError(f"the server failed mid-answer: {event['error'].get('message')}")
                for choice in event.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
                    if piece:
                        text += piece
                        chunks += 1
                        if answer_first and answered_at is None and "\n" in text.lstrip():
                            answered_at, chunks_to_answer = time.perf_counter(), chunks
    except httpx.HTTPError as e:
        raise UserError(f"request to {url} failed: {e}") from None
    ended = time.perf_counter()
    answered_at = answered_at or ended
    return text, chunks_to_answer or chunks, chunks, answered_at - started, ended - started


def predict(method: Method, example: Example, text: str, tokens: tuple[int, int], secs: tuple[float, float],
            tokenizer=None) -> Prediction:
    """Score-ready prediction from a served reply: the method's own parsing, as local eval does."""
    text = text.lstrip()
    if method.answer_first:
        line, _, rest = text.partition("\n")
        answer, rationale = extract_answer(line.strip(), example.answer_type, example.choices), \
            method.layout.rationale_text(rest) or None
    else:
        line, rest = text, ""
        answer, rationale = method.parse(text, example)
    if tokenizer is not None:  # count tokens as the student does, not chunks
        n_first = len(tokenizer(line + ("\n" if method.answer_first and rest else ""),
                                add_special_tokens=False).input_ids)
        tokens = (n_first, len(tokenizer(text, add_special_tokens=False).input_ids))
    return Prediction(answer, text, rationale, tokens[0], tokens[1], secs[0], secs[1])


def evaluate_server(server: str, data: str, *, served_model: str | None = None, model: str | Path | None = None,
                    method: str | None = None, split: str = "test", n: int | None = None, seed: int = 0,
                    out: str | Path | None = None, format: str | None = None, max_new_tokens: int | None = None,
                    explain: bool = True, concurrency: int = 8, test_fraction: float = 0.2,
                    timeout: float = 600.0) -> dict:
    """Evaluate the student served at ``server`` (``http://host:port`` or ``.../v1``) on ``data``."""
    import httpx
    if concurrency < 1:
        raise UserError(f"--concurrency must be at least 1, got {concurrency}")
    base = server.rstrip("/")
    base = base if base.endswith("/v1") else base + "/v1"
    record = read_record(model) if model else {}  # a finished run folder, or a one-line error
    out_dir = Path(out) if out else (Path(model) if model else None)
    if out_dir is None:
        raise UserError("eval --server needs --out (or --model RUN) for metrics.json")
    with httpx.Client(timeout=timeout) as client:
        entry = served_entry(client, base, served_model)
        ours = "method" in entry  # our serve names its method and wraps questions itself
        name = method or record.get("method") or entry.get("method")
        if not name:
            raise UserError("name the student's method with --method (or pass its run folder as --model)")
        student = get_method(name, **({} if method else record.get("method_options", {})))
        layout = record.get("layout") or {"chat": not ours}
        student.use_layout(Layout(chat=bool(layout.get("chat")), think=bool(layout.get("think"))))
        tokenizer = None
        if model:
            from .models import load_tokenizer
            tokenizer = load_tokenizer(str(model))
            student.layout.tokenizer = tokenizer
        examples = load_task(data, split, n=n, seed=seed, test_fraction=test_fraction, format=format)
        budget = max_new_tokens or int(record.get("max_new_tokens", 256))
        common = {"model": entry["id"], "max_tokens": budget, "temperature": 0.0}
        if student.answer_first and not explain:
            common["stop"] = ["\n"]

        def one(ex: Example) -> Prediction:
            if ours:  # the server renders the prompt; choices travel as format_question writes them
                question = format_question(ex)[len("Question: "):].rstrip("\n")
                body, path = {**common, "messages": [{"role": "user", "content": question}]}, "/chat/completions"
            elif student.layout.chat:
                body = {**common, "messages": [{"role": "user", "content": format_question(ex).strip()}]}
                path = "/chat/completions"
            else:
                body, path = {**common, "prompt": student.prompt(ex)}, "/completions"
            text, k, total, t_answer, t_total = stream(client, base + path, body, student.answer_first)
            return predict(student, ex, text, (k, total), (t_answer, t_total), tokenizer)

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            predictions = list(pool.map(one, examples))
    metrics = {**score(student, examples, predictions), "data": data, "split": split, "server": server,
               "served_model": entry["id"], "tokens_counted_by": "tokenizer" if tokenizer else "stream chunks"}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_results(out_dir, examples, predictions)
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics
