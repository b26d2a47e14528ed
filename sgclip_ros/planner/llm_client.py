"""A small client for the OpenAI-compatible ``/v1/chat/completions`` API (standard library only).

Works with OpenAI, vLLM, Ollama and llama.cpp server. Every call has a hard deadline that covers
all its retries; connection errors, 429 and 5xx are retried with exponential backoff; a circuit
breaker fails fast while the endpoint keeps failing; responses larger than a cap are cut off
unread. The API key is held privately, sent only as a header and redacted from every message.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import socket
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sgclip_ros.planner.breaker import HALF_OPEN, CircuitBreaker

RETRYABLE = frozenset({"unreachable", "rate_limited", "server_error"})
_ERROR_EXCERPT_BYTES = 4096
_CHUNK = 65536


class LLMError(Exception):
    """A failed chat call. ``kind`` is one of: unreachable, timeout, rate_limited, server_error,
    http_error, too_large, bad_response, circuit_open, config."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.kind, self.retry_after = kind, retry_after


@dataclass(frozen=True)
class LLMConfig:
    base_url: str  # e.g. https://api.openai.com/v1, http://localhost:8000/v1
    model: str
    timeout_s: float = 10.0  # per chat() call, all attempts and backoff included
    max_retries: int = 2
    backoff_s: float = 0.5
    max_backoff_s: float = 4.0
    max_response_bytes: int = 1 << 20
    temperature: float = 0.0
    max_tokens: int = 512
    json_mode: bool = False  # send response_format {"type": "json_object"}


@dataclass(frozen=True)
class _Endpoint:
    https: bool
    host: str
    port: int | None
    path: str


# Upper case only, on purpose: API keys (gsk_..., hf_..., AIza..., sk-...) contain lower case or
# dashes, so a key pasted where the variable's NAME belongs is refused, never echoed or logged.
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
ENV_NAME_RULE = "an environment variable NAME of A-Z, 0-9 and _ (e.g. OPENAI_API_KEY)"


def valid_env_name(name: str) -> bool:
    """True for a name matching ``^[A-Z_][A-Z0-9_]*$``, at most 128 long ("" allowed: no key)."""
    return isinstance(name, str) and (name == "" or _ENV_NAME.fullmatch(name) is not None)


def api_key_from_env(var_name: str) -> str | None:
    """The key in environment variable ``var_name`` (None when unset, empty or no name given)."""
    return (os.environ.get(var_name) or None) if var_name else None


def safe_url(url: str) -> str:
    """``url`` without user info, query or fragment: safe to log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def parse_endpoint(base_url: str) -> _Endpoint:
    """Validate ``base_url`` (http or https only) and derive the chat completions path."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LLMError("config", f"base_url must be an http(s) URL, got {safe_url(base_url)!r}")
    if parts.username or parts.password:
        raise LLMError("config", "base_url must not contain credentials; use api_key_env")
    path = parts.path.rstrip("/") + "/chat/completions"
    return _Endpoint(parts.scheme == "https", parts.hostname, parts.port, path)


class ChatClient:
    """``chat(messages) -> str``: the assistant message text, or raises :class:`LLMError`."""

    def __init__(
        self,
        config: LLMConfig,
        api_key: str | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.config = config
        self.endpoint = parse_endpoint(config.base_url)
        self.breaker = breaker or CircuitBreaker()
        self._api_key = api_key
        self._clock, self._sleep = clock, sleep
        self._rng = random.Random()
        self.stats = {"calls": 0, "failures": 0, "attempts": 0, "last_latency_s": 0.0}
        self.last_error = ""

    def __repr__(self) -> str:  # never show the key
        return f"ChatClient({safe_url(self.config.base_url)}, model={self.config.model!r})"

    def chat(self, messages: list[dict]) -> str:
        """One chat completion within ``timeout_s``; retries, breaker and size cap applied."""
        state = self.breaker.acquire()
        if state is None:
            wait = self.breaker.seconds_until_probe()
            raise LLMError("circuit_open", f"LLM endpoint circuit open; next probe in {wait:.1f} s")
        start = self._clock()
        self.stats["calls"] += 1
        retries = 0 if state == HALF_OPEN else self.config.max_retries  # a probe is one try
        try:
            deadline = start + self.config.timeout_s
            content = self._with_retries(self._payload(messages), deadline, retries)
        except LLMError as exc:
            self._failed(str(exc))
            raise
        except Exception as exc:  # never leave a half-open probe hanging
            self._failed(f"unexpected {type(exc).__name__}")
            raise LLMError(
                "bad_response", f"unexpected client error: {type(exc).__name__}"
            ) from None
        self.breaker.record_success()
        self.stats["last_latency_s"] = self._clock() - start
        self.last_error = ""
        return content

    def _failed(self, message: str) -> None:
        self.breaker.record_failure()
        self.stats["failures"] += 1
        self.last_error = message

    def _payload(self, messages: list[dict]) -> bytes:
        body = {
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
            "stream": False,
        }
        if self.config.json_mode:
            body["response_format"] = {"type": "json_object"}
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def _with_retries(self, payload: bytes, deadline: float, retries: int) -> str:
        attempt = 0
        while True:
            try:
                return self._attempt(payload, deadline)
            except LLMError as exc:
                if exc.kind not in RETRYABLE or attempt >= retries:
                    raise
                delay = self._delay(attempt, exc.retry_after)
                if self._clock() + delay >= deadline:
                    raise  # no time left for another try: report the real cause
                self._sleep(delay)
                attempt += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = self.config.backoff_s * (2**attempt) * self._rng.uniform(0.8, 1.2)
        backoff = min(backoff, self.config.max_backoff_s)
        return max(backoff, retry_after or 0.0)

    def _attempt(self, payload: bytes, deadline: float) -> str:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise self._timeout()
        self.stats["attempts"] += 1
        conn = self._connection(remaining)
        expired = threading.Event()
        watchdog = None
        try:
            conn.connect()  # bounded by the socket timeout (= the remaining budget)
            # A hard deadline: socket timeouts alone restart on every byte a slow server sends.
            watchdog = threading.Timer(deadline - self._clock(), _abort, (conn.sock, expired))
            watchdog.daemon = True
            watchdog.start()
            conn.request("POST", self.endpoint.path, body=payload, headers=self._headers())
            response = conn.getresponse()
            status, headers = response.status, response.headers
            body = self._read_body(response, status, deadline)
        except TimeoutError:
            raise self._timeout() from None
        except http.client.IncompleteRead:
            if expired.is_set():
                raise self._timeout() from None
            raise LLMError("bad_response", "response body ended early") from None
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set():
                raise self._timeout() from None
            raise LLMError("unreachable", f"cannot reach the LLM endpoint: {_name(exc)}") from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
            conn.close()
        return self._content(status, headers, body)

    def _timeout(self) -> LLMError:
        return LLMError("timeout", f"no answer within {self.config.timeout_s:g} s")

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        ep = self.endpoint
        if ep.https:
            import ssl

            return http.client.HTTPSConnection(
                ep.host, ep.port, timeout=timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "sgclip_ros-planner",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _read_body(self, response, status: int, deadline: float) -> bytes:
        """The body, at most max_response_bytes (error bodies: a short excerpt only)."""
        if not 200 <= status < 300:
            return response.read(_ERROR_EXCERPT_BYTES)
        cap = self.config.max_response_bytes
        length = response.getheader("Content-Length")
        if length and length.strip().isdigit() and int(length) > cap:
            raise LLMError(
                "too_large", f"response of {int(length)} bytes exceeds the {cap}-byte cap"
            )
        chunks, total = [], 0
        while True:
            if self._clock() >= deadline:
                raise TimeoutError
            chunk = response.read(_CHUNK)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > cap:
                raise LLMError("too_large", f"response exceeds the {cap}-byte cap")
            chunks.append(chunk)

    def _content(self, status: int, headers, body: bytes) -> str:
        if status == 429:
            raise LLMError(
                "rate_limited",
                f"HTTP 429 rate limited: {self._excerpt(body)}",
                retry_after=_retry_after(headers.get("Retry-After")),
            )
        if status >= 500:  # a 503 may say when to come back, like a 429
            raise LLMError(
                "server_error",
                f"HTTP {status}: {self._excerpt(body)}",
                retry_after=_retry_after(headers.get("Retry-After")),
            )
        if not 200 <= status < 300:
            raise LLMError("http_error", f"HTTP {status}: {self._excerpt(body)}")
        try:
            doc = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise LLMError("bad_response", "response body is not JSON") from None
        return _message_text(doc)

    def _excerpt(self, body: bytes) -> str:
        """A short, printable, key-free excerpt of an error body for logs and feedback."""
        text = body[:400].decode("utf-8", errors="replace")
        text = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in text)
        return redact(text.strip()[:200], self._api_key) or "(empty body)"


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced."""
    return text.replace(secret, "***") if secret else text


def _message_text(doc) -> str:
    """choices[0].message.content as text (a string, or a list of text parts)."""
    try:
        content = doc["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise LLMError("bad_response", "response has no choices[0].message.content") from None
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str) or not content.strip():
        raise LLMError("bad_response", "the model returned no text")
    return content


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the delta-seconds form; HTTP dates are ignored)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 3600 else None


def _abort(sock: socket.socket | None, expired: threading.Event) -> None:
    expired.set()
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv; close() alone may not
        except OSError:
            pass


def _name(exc: BaseException) -> str:
    return type(exc).__name__ + (f" ({exc.strerror})" if getattr(exc, "strerror", None) else "")
