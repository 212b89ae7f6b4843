"""A model served by an existing OpenAI-compatible engine, behind the same `Engine` seam.

llama.cpp's llama-server, llama-cpp-python's server, vLLM and ollama all serve
``/v1/chat/completions``. askgpt builds the prompt exactly as for a local model
(documents, few-shot examples, long-document strategies, budgets); only the last
step differs. This engine reports a chat template of its own that writes the
messages in an unambiguous private form; `generate` reads them back and sends
them as chat messages, so the server applies the model's real template. Token
counts come from the server's tokenizer where it has a tokenize endpoint
(llama.cpp, llama-cpp-python, vLLM), else an estimate (4 bytes a token). The
context size is the server's where it reports one (llama.cpp ``/props``, vLLM's
``max_model_len``), else ``--ctx``.

Only the standard library's HTTP client: no new dependency. An API key (from
``ASKGPT_API_KEY`` or the config file) goes only into the Authorization header,
never into a message, a log row or an error.
"""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from askgpt.runtime.engine.base import MEDIA_CLOSE, MEDIA_OPEN, EmbeddingRows, ModelInfo, PromptPart
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.errors import AskgptError, ExitCode, UsageError
from askgpt.runtime.models.endpoints import base_url, shown

# The private template's delimiters: private-use characters, read back as structure only
# from the markup runtime.prompting.generate tokenizes with special=True, never from content.
_OPEN, _SEP, _CLOSE = "\ue020", "\ue021", "\ue022"
MESSAGES_TEMPLATE = (
    "{%- for m in messages -%}" + _OPEN + "{{ m.role }}" + _SEP + "{{ m.content }}" + _CLOSE + "{%- endfor -%}"
    "{%- if add_generation_prompt -%}" + _OPEN + "assistant" + _SEP + "{%- endif -%}"
)
BYTES_PER_TOKEN = 4  # the estimate where a server cannot count tokens
# What an image sent as a data: URL is counted as: vision models spend 256 (Gemma 3) to 576
# (LLaVA-1.5) tokens on one image, more when they tile; the URL's own length means nothing.
IMAGE_TOKENS = 768
_REMEMBERED = 4096  # tokenize calls whose text generate can still send


class RemoteError(AskgptError):
    """The served engine could not be reached or answered with an error."""

    exit_code = ExitCode.MODEL_FAILURE
    # The server was reached and turned the request down (an HTTP error, or an answer that
    # broke off), as opposed to a refused connection or a timeout.
    refused: bool = False


def _refused(message: str, *, hint: str | None = None) -> RemoteError:
    error = RemoteError(message, hint=hint)
    error.refused = True
    return error


@dataclass(frozen=True)
class RemoteConfig:
    endpoint: str  # the server's base URL, e.g. http://127.0.0.1:8080/v1
    model: str | None = None  # the served model's id; None: the server's first (or only) model
    api_key: str | None = None
    timeout: float = 120.0  # seconds to wait for a connection or for the next piece of an answer
    n_ctx: int = 4096  # the budget where the server does not report its context size


@dataclass(frozen=True)
class Segment:
    """A run of the prompt as `RemoteEngine.tokenize` was given it: ``markup`` for what
    runtime.prompting.generate tokenized with ``special=True`` (the template's delimiters, askgpt's image
    URLs), else content."""

    text: str
    markup: bool


def render_messages(segments: Sequence[Segment], *, images: bool = True) -> list[dict[str, Any]]:
    """Read back the messages `MESSAGES_TEMPLATE` wrote. Only markup segments are read as
    structure, so a document holding the delimiters (or an image's markers) stays text in
    its message. The trailing open assistant turn is the generation prompt (its text, if
    any, is a prefill the server cannot take and is dropped). A message holding images
    becomes OpenAI's content parts (text, then each image_url); with ``images=False`` they
    are left out and the text alone is sent."""
    messages: list[dict[str, Any]] = []
    role: list[str] | None = None  # the open message's role, while it is being read
    content: list[str] | None = None  # the open message's content, after its role
    urls: list[str] = []
    for segment in segments:
        if not segment.markup:
            if content is not None:
                content.append(segment.text)
            elif role is not None:
                role.append(segment.text)
            continue
        text = segment.text
        if text == _OPEN:
            role, content, urls = [], None, []
        elif text == _SEP and role is not None and content is None:
            content = []
        elif text == _CLOSE and role is not None and content is not None:
            plain = "".join(content)
            if urls and images:
                parts: list[dict[str, Any]] = [{"type": "text", "text": plain}]
                parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
                messages.append({"role": "".join(role), "content": parts})
            else:
                messages.append({"role": "".join(role), "content": plain})
            role = content = None
        elif text.startswith(MEDIA_OPEN) and text.endswith(MEDIA_CLOSE) and content is not None:
            urls.append(text[len(MEDIA_OPEN):-len(MEDIA_CLOSE)])
        else:
            raise UsageError("the prompt for the served model is malformed")
    return messages


class _Http:
    def __init__(self, config: RemoteConfig) -> None:
        self.base = base_url(config.endpoint)
        self._root = self.base.removesuffix("/v1")
        self._key = config.api_key
        self._timeout = config.timeout

    def _request(self, url: str, body: dict[str, Any] | None) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")
        try:
            return urllib.request.urlopen(req, timeout=self._timeout)  # noqa: S310 (http(s) only, checked)
        except urllib.error.HTTPError as exc:
            raise _http_error(exc, url) from None
        except TimeoutError as exc:
            raise self._timed_out(url) from exc
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise self._timed_out(url) from exc
            what = ("refused the connection" if isinstance(reason, ConnectionRefusedError)
                    else f"is unreachable: {reason}")
            raise RemoteError(f"{shown(self._root)} {what}", hint="is the server running? check --endpoint") from exc
        except OSError as exc:
            raise RemoteError(f"{shown(self._root)} is unreachable: {exc}", hint="check --endpoint") from exc

    def _timed_out(self, url: str) -> RemoteError:
        return RemoteError(f"the served model at {shown(url)} did not answer within {self._timeout:g} s",
                           hint="raise endpoint_timeout in the config, or check the server")

    def get(self, path: str, *, root: bool = False) -> Any:
        url = (self._root if root else self.base) + path
        with self._request(url, None) as resp:
            return _json(resp.read(), url)

    def post(self, path: str, body: dict[str, Any], *, root: bool = False) -> Any:
        url = (self._root if root else self.base) + path
        with self._request(url, body) as resp:
            return _json(resp.read(), url)

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Server-sent events of a streamed completion, as parsed JSON objects."""
        resp = self._request(self.base + path, body)
        finished = False
        try:
            for raw in resp:
                line = raw.decode("utf-8", errors="replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                event = _json(data.encode(), self.base + path)
                if not isinstance(event, dict):
                    raise _refused(f"{shown(self.base + path)} sent an event that is not a JSON object")
                if event.get("error"):
                    raise _refused(f"the served model failed: {_message(event['error'])}")
                finished = finished or any(c.get("finish_reason") for c in event.get("choices") or [])
                yield event
            if not finished:
                raise _refused("the served model's answer broke off", hint="the server's own log says why")
        except TimeoutError as exc:
            raise self._timed_out(self.base + path) from exc
        finally:
            resp.close()  # also how a stopped answer stops the server's generation


def _json(data: bytes, url: str) -> Any:
    try:
        return json.loads(data or b"null")
    except ValueError:
        raise _refused(f"{shown(url)} answered with something that is not JSON",
                       hint="is --endpoint an OpenAI-compatible server?") from None


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)[:300]
    return str(error)[:300]


def _http_error(exc: urllib.error.HTTPError, url: str) -> RemoteError:
    try:
        body = json.loads(exc.read() or b"null")
        detail = _message(body.get("error") or body.get("detail") or body) if isinstance(body, dict) else str(body)
    except (ValueError, OSError):
        detail = exc.reason
    hint = "set ASKGPT_API_KEY (or api_key in the config)" if exc.code in (401, 403) else None
    return _refused(f"the served model at {shown(url)} answered HTTP {exc.code}: {detail}"[:400], hint=hint)


class RemoteEngine:
    """`Engine` over an OpenAI-compatible server."""

    def __init__(self, config: RemoteConfig) -> None:
        self._http = _Http(config)
        self._kind, self._model, n_ctx = self._probe(config)
        self._texts: dict[int, Segment] = {}
        self._pieces: dict[str, int] = {}  # streamed text pieces, interned as stand-in token ids
        self._piece_bytes: list[bytes] = []
        self._ids = itertools.count(1)
        self._info = ModelInfo(
            name=self._model, path=Path(shown(self._http.base)), n_ctx=n_ctx or config.n_ctx,
            n_ctx_train=n_ctx, n_embd=0, chat_template=MESSAGES_TEMPLATE, bos_token="", eos_token="",
            add_bos=False)
        self.accepts_image_urls = True  # tried with every image; see generate
        self.image_urls_refused = False

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def endpoint(self) -> str:
        return shown(self._http.base)

    def _probe(self, config: RemoteConfig) -> tuple[str, str, int]:
        """(server kind, model id, context size or 0): /v1/models, then each flavour's own
        endpoint until one answers (vLLM's max_model_len needs none)."""
        listing = self._http.get("/models")
        data = listing.get("data") if isinstance(listing, dict) else None
        models = [m for m in data or [] if isinstance(m, dict) and m.get("id")]
        ids = [str(m["id"]) for m in models]
        if config.model is not None and ids and config.model not in ids:
            raise RemoteError(f"{self.endpoint} serves no model {config.model!r} (it serves: {', '.join(ids[:8])})",
                              hint="pass one of those with --remote-model / -m")
        model = config.model or (ids[0] if ids else "")
        if not model:
            raise RemoteError(f"{self.endpoint} lists no model", hint="name one with --remote-model")
        entry = next((m for m in models if m["id"] == model), {})
        if entry.get("max_model_len"):
            return "vllm", model, int(entry["max_model_len"])
        try:
            props = self._http.get("/props", root=True)  # llama.cpp's llama-server
            settings = props.get("default_generation_settings", {}) if isinstance(props, dict) else {}
            return "llama.cpp", model, int(props.get("n_ctx") or settings.get("n_ctx") or 0)
        except RemoteError:
            pass
        try:  # llama-cpp-python's server
            self._http.post("/extras/tokenize/count", {"input": "probe"}, root=True)
            return "llama-cpp-python", model, 0
        except RemoteError:
            return "openai", model, 0  # ollama, OpenAI itself, ...

    def count_tokens(self, text: str) -> int:
        return self._count(text) if text else 0

    def _count(self, text: str) -> int:
        try:
            if self._kind == "llama-cpp-python":
                return int(self._http.post("/extras/tokenize/count", {"input": text, "model": self._model},
                                           root=True)["count"])
            if self._kind == "llama.cpp":
                return len(self._http.post("/tokenize", {"content": text, "add_special": False}, root=True)["tokens"])
            if self._kind == "vllm":
                return int(self._http.post("/tokenize", {"model": self._model, "prompt": text,
                                                         "add_special_tokens": False}, root=True)["count"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _refused(f"{self.endpoint}'s tokenizer answered in an unexpected form ({exc!r})") from exc
        return max(1, -(-len(text.encode()) // BYTES_PER_TOKEN))

    @property
    def control_texts(self) -> frozenset[str]:
        return frozenset({_OPEN, _SEP, _CLOSE})

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        """Stand-in ids, as many as the server's tokenizer makes of ``text``, unique to this
        call, so `generate` can tell which text a run of them stands for, and whether it was
        markup (``special``). The most recent calls are remembered (a prompt is tokenized
        right before it is sent; counting a huge document must not keep it all)."""
        if not text:
            return []
        first = next(self._ids)
        media = special and text.startswith(MEDIA_OPEN)
        n = IMAGE_TOKENS if media else 1 if special else self.count_tokens(text)
        ids = [-first] + [0] * (n - 1)
        self._texts[-first] = Segment(text, special)
        while len(self._texts) > _REMEMBERED:
            del self._texts[next(iter(self._texts))]
        return ids

    def token_bytes(self, token: int) -> bytes:
        return self._piece_bytes[token] if 0 <= token < len(self._piece_bytes) else b""

    def _segments(self, prompt: Sequence[PromptPart]) -> list[Segment]:
        segments = []
        for part in prompt:
            if isinstance(part, EmbeddingRows):
                raise UsageError("a served model gets images as text: --image-mode embed|both and --mmproj "
                                 "need a local model")
            # A run may hold several tokenize calls' ids back to back: each starts at its negative id.
            starts = [i for i, t in enumerate(part.ids) if t < 0]
            if not part.ids or starts[:1] != [0]:
                raise UsageError("the served model was sent token ids askgpt did not make for it")
            for i in starts:
                segment = self._texts.get(part.ids[i])
                if segment is None:
                    raise UsageError("the served model was sent token ids askgpt did not make for it")
                segments.append(segment)
        return segments

    def generate(self, prompt: Sequence[PromptPart], sampling: SamplingConfig) -> Generator[int, None, None]:
        segments = self._segments(prompt)
        body: dict[str, Any] = {
            "model": self._model, "messages": render_messages(segments), "stream": True,
            "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed,
        }
        if self._kind in ("llama.cpp", "llama-cpp-python"):
            body.update(top_k=sampling.top_k, min_p=sampling.min_p, repeat_penalty=sampling.repeat_penalty)
        elif self._kind == "vllm":
            body.update(top_k=sampling.top_k, min_p=sampling.min_p, repetition_penalty=sampling.repeat_penalty)
        if sampling.json_schema is not None:
            schema = json.loads(sampling.json_schema)
            # llama-cpp-python takes its own form; the others take OpenAI's.
            body["response_format"] = ({"type": "json_object", "schema": schema}
                                       if self._kind == "llama-cpp-python" else
                                       {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema,
                                                                                "strict": True}})
        body = {k: v for k, v in body.items() if v is not None}
        try:
            events = self._http.stream("/chat/completions", body)
            first = next(events, None)
        except RemoteError as exc:
            # A server or model that takes no images refuses the request outright: send the
            # images' text blocks alone (what askgpt's encoders found) and say so.
            if not any(s.markup and s.text.startswith(MEDIA_OPEN) for s in segments) or not exc.refused:
                raise
            self.image_urls_refused = True
            events = self._http.stream("/chat/completions",
                                       {**body, "messages": render_messages(segments, images=False)})
            first = next(events, None)
        for event in itertools.chain([first] if first is not None else [], events):
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece:
                    yield self._intern(piece)

    def _intern(self, piece: str) -> int:
        """One stand-in id per distinct piece, so the loop guard sees a repeat as a repeat."""
        token = self._pieces.get(piece)
        if token is None:
            token = self._pieces[piece] = len(self._piece_bytes)
            self._piece_bytes.append(piece.encode())
        return token

    def next_token_logprobs(self, prompt: Sequence[PromptPart]) -> Any:
        raise UsageError("a served model does not give askgpt its next-token distribution")

    def close(self) -> None:
        self._texts.clear()

    def __enter__(self) -> RemoteEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
