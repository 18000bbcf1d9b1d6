"""What ``serve`` refuses, and how cheaply: limits checked before any model work, and the ASGI guard.

The guard sits outside the app: it counts every response by status, answers an unexpected error
with a generic 500 (and logs the detail), refuses a body over ``max_body_bytes`` before reading it (or as
soon as a chunked body passes the limit), and answers 401 without the API key. Nothing here touches
the model, so an abusive request costs the server a few microseconds.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

log = logging.getLogger("reasondistill.serve")
OPEN_PATHS = ("/health",)  # answered without the API key (load balancers probe it)


@dataclass
class Limits:
    """``serve``'s limits. ``max_prompt_tokens`` None means the model's context length."""

    max_prompt_tokens: int | None = None
    max_tokens: int = 2048            # most new tokens one choice may ask for
    max_request_work: int = 262_144   # prompts × n × max_tokens one request may ask for
    max_body_bytes: int = 4 * 2 ** 20
    api_key: str | None = None


class APIError(Exception):
    """An OpenAI-style error response: status, message, type, param, code."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def context_length(model) -> int | None:
    """The model's context length from its config (the names transformers configs use)."""
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def longest_token_chars(tokenizer) -> int:
    """An upper bound on the characters one token covers (the longest vocabulary entry), so a text
    longer than ``limit × this`` is over ``limit`` tokens without tokenising it."""
    return max((len(t) for t in tokenizer.get_vocab()), default=1) or 1


class Guard:
    """ASGI middleware: status counts, the body size limit and the API key."""

    def __init__(self, app, counters: dict[str, Any], limits: Limits) -> None:
        self.app, self.counters, self.limits = app, counters, limits

    async def _reply(self, send, status: int, error: APIError) -> None:
        body = json.dumps(error.body()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _authorised(self, scope) -> bool:
        key = self.limits.api_key
        if not key or scope.get("path") in OPEN_PATHS:
            return True
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        given = given[7:] if given.lower().startswith("bearer ") else headers.get(b"x-api-key", b"").decode("latin-1")
        return hmac.compare_digest(given.encode(), key.encode())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        c = self.counters
        c["requests"] += 1
        c["in_flight"] += 1
        c["max_in_flight"] = max(c["max_in_flight"], c["in_flight"])
        started = False

        def count(status: int) -> None:
            c["status"][str(status)] = c["status"].get(str(status), 0) + 1
            if status >= 400:
                c["errors"] += 1

        async def counting_send(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                count(message["status"])
            await send(message)

        limit = self.limits.max_body_bytes
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(413, _too_large(limit).message)
            return message

        try:
            if not self._authorised(scope):
                return await self._reply(counting_send, 401, APIError(
                    401, "missing or wrong API key (send 'Authorization: Bearer KEY')", code="invalid_api_key"))
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                return await self._reply(counting_send, 413, _too_large(limit))
            await self.app(scope, limited_receive, counting_send)
        except _TooLarge:
            if not started:
                await self._reply(counting_send, 413, _too_large(limit))
        except Exception as e:  # a generic 500; the detail goes to the log, never to the client
            log.error("internal error answering %s %s", scope.get("method"), scope.get("path"), exc_info=e)
            if not started:
                await self._reply(counting_send, 500, APIError(
                    500, "internal error (the server log has the detail)", type="server_error"))
        finally:
            c["in_flight"] -= 1


class _TooLarge(HTTPException):
    """Raised while a body is read: FastAPI passes HTTP exceptions through to the app's handler."""


def _too_large(limit: int) -> APIError:
    return APIError(413, f"request body over this server's limit of {limit} bytes", code="body_too_large")
