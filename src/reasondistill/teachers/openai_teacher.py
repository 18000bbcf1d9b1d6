"""The ``openai:MODEL`` teacher: any OpenAI-compatible server through the official async client.

Transient failures (429, 408, 5xx, timeouts, dropped connections) are retried with exponential
backoff and jitter, honouring the server's Retry-After; the client's own retries are off so every
attempt is counted and the policy is ours. Requests that can never succeed (400 bad request,
401/403 bad key, 404 unknown model or URL, 422) stop the run at once with one clear line instead
of burning a retry loop. The key comes from ``OPENAI_API_KEY``; local servers (``--base-url``)
need none. The server's URL is part of the teacher's identity, hence of every stored call's key:
two servers that serve a model under one name are two teachers.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from typing import Any

import openai

from ..errors import UserError
from .base import Call, Completion, Teacher

DEFAULT_URL = "https://api.openai.com/v1"
RETRY_STATUS = {408, 409, 429}


class MalformedResponse(Exception):
    """A 2xx answer without the expected JSON (a proxy's error page, a truncated body): retried."""
MAX_WAIT = 120.0  # the longest pause we take, whatever Retry-After says
HINTS = {401: "check OPENAI_API_KEY", 403: "check the key's permissions",
         404: "check the model name and --base-url (it usually ends in /v1)"}


def retry_after(response: Any) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``retry-after`` seconds or date)."""
    headers = getattr(response, "headers", None) or {}
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def parse_response(data: dict[str, Any], api: str = "chat") -> Completion:
    """A chat or completions response body as a :class:`Completion` (also the batch API's rows).
    Raises KeyError/IndexError/TypeError when the body is not one."""
    choice = data["choices"][0]
    if api == "chat":
        message = choice["message"]
        text = message.get("content") or ""
        reasoning = message.get("reasoning_content") or message.get("reasoning")
    else:
        text, reasoning = choice["text"] or "", choice.get("reasoning_content") or choice.get("reasoning")
    raw = data.get("usage") or {}
    usage = {k: int(raw[k]) for k in ("prompt_tokens", "completion_tokens") if raw.get(k) is not None}
    details = raw.get("completion_tokens_details") or {}
    thinking = details.get("reasoning_tokens") if isinstance(details, dict) else None
    if thinking is None:
        thinking = raw.get("reasoning_tokens")
    if thinking is not None:
        usage["thinking_tokens"] = int(thinking)
    return Completion(str(text), str(reasoning) if reasoning else None, choice.get("finish_reason"), usage)


def request_body(model: str, call: Call, api: str, extra_body: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of one call, the same online and in a batch file."""
    body: dict[str, Any] = {"model": model, "max_tokens": call.max_tokens, "temperature": call.temperature}
    if call.top_p != 1.0:
        body["top_p"] = call.top_p
    if call.stop:
        body["stop"] = call.stop
    if api == "chat":
        body["messages"] = [{"role": "user", "content": call.prompt}]
    else:
        body["prompt"] = call.prompt
    return {**body, **extra_body}


def _message(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict):
            body = body.get("message") or body.get("detail") or body
    return str(body or e.message).splitlines()[0][:300]


class OpenAITeacher(Teacher):
    kind = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api: str = "chat", timeout: float = 60.0,
                 max_retries: int = 6, backoff: float = 1.0, extra_body: dict | None = None) -> None:
        super().__init__(f"openai:{model}", model)
        if api not in ("chat", "completions"):
            raise UserError(f"--api must be 'chat' or 'completions', not '{api}'")
        if timeout <= 0 or max_retries < 0 or backoff < 0:
            raise UserError("--timeout must be positive, --max-retries and --backoff not negative")
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        self.url = (self.base_url or DEFAULT_URL).rstrip("/")
        self.api_key = os.environ.get("OPENAI_API_KEY") or ("EMPTY" if self.base_url else None)
        if not self.api_key:
            raise UserError("set OPENAI_API_KEY, or pass --base-url for a local server that needs no key")
        self.api, self.timeout, self.max_retries, self.backoff = api, timeout, max_retries, backoff
        self.extra_body = dict(extra_body or {})
        self.failures: dict[str, int] = {}  # retried failures by cause ("429", "500", "timeout", ...)
        self._client: openai.AsyncOpenAI | None = None

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "url": self.url, "api": self.api,
                "extra_body": self.extra_body}

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:  # made inside the running event loop, which owns its connections
            self._client = openai.AsyncOpenAI(api_key=self.api_key, base_url=self.base_url, max_retries=0,
                                              timeout=self.timeout)
        return self._client

    @property
    def endpoint(self) -> str:
        return "/chat/completions" if self.api == "chat" else "/completions"

    async def _request(self, call: Call) -> Completion:
        """One attempt. The body goes through the client's plain ``post`` (its connection pool,
        auth, timeouts and typed errors) rather than ``chat.completions.create``, whose request
        transformation and response models cost ~3 ms of CPU per call: at high concurrency
        against a fast server that, not the network, would limit ``teach``."""
        text = await self.client.post(self.endpoint, body=request_body(self.model, call, self.api, self.extra_body),
                                      cast_to=str, options={"timeout": self.timeout})
        try:
            return parse_response(json.loads(text), self.api)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise MalformedResponse(text[:200]) from None

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: half fixed, half random, so retries spread out."""
        base = min(MAX_WAIT, self.backoff * 2 ** attempt)
        return base * (0.5 + random.random() / 2)

    async def complete(self, call: Call) -> Completion:
        for attempt in range(self.max_retries + 1):
            self.requests += 1
            try:
                return await self._request(call)
            except openai.APIStatusError as e:
                code = e.status_code
                if code not in RETRY_STATUS and code < 500:
                    hint = f" ({HINTS[code]})" if code in HINTS else ""
                    raise UserError(f"teacher {self.spec} at {self.client.base_url} refused the request: "
                                    f"HTTP {code}: {_message(e)}{hint}") from None
                cause, wait = str(code), retry_after(e.response)
            except openai.APITimeoutError:
                cause, wait = "timeout", None
            except MalformedResponse:
                cause, wait = "malformed response", None
            except openai.APIConnectionError as e:
                cause, wait = f"connection ({type(e.__cause__).__name__ if e.__cause__ else 'error'})", None
            self.failures[cause] = self.failures.get(cause, 0) + 1
            if attempt == self.max_retries:
                break
            self.retries += 1
            await asyncio.sleep(min(MAX_WAIT, wait) if wait is not None else self._delay(attempt))
        raise UserError(f"teacher {self.spec} at {self.client.base_url} failed {self.max_retries + 1} times "
                        f"(last: {cause}); finished calls are stored, run the same command again to resume")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
