"""Optional engine features (runtime/engine/capabilities.py): each engine has exactly the
protocols its features promise, so callers can ask isinstance instead of probing names."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import ScriptedEngine

from askgpt.runtime.engine.base import EngineConfig
from askgpt.runtime.engine.capabilities import (
    ImageUrls,
    PrefixCacheEvents,
    PromptLookupCounters,
    Served,
    VisionProjector,
    gives_logprobs,
    image_urls_refused,
)
from askgpt.runtime.engine.kinds import is_local, kind_of, load_engine
from askgpt.runtime.errors import UsageError
from askgpt.runtime.models.registry import ModelRef

ALL = (VisionProjector, PromptLookupCounters, PrefixCacheEvents, ImageUrls, Served)


@pytest.fixture()
def vllm_like() -> Iterator[str]:
    """A server that answers only the model listing, as vLLM does (with its context size)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            body = {"data": [{"id": "served-7b", "max_model_len": 512}]} if self.path == "/v1/models" else {}
            data = json.dumps(body).encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()


def test_a_served_engine_is_served_and_takes_image_urls_only(vllm_like: str) -> None:
    from askgpt.runtime.icl.answers import has_logprobs

    ref = ModelRef("served", Path(), endpoint=vllm_like)
    assert kind_of(ref).name == "served" and not is_local(ref)
    engine = load_engine(ref, EngineConfig())
    try:
        assert [p.__name__ for p in ALL if isinstance(engine, p)] == ["ImageUrls", "Served"]
        assert not gives_logprobs(engine) and not has_logprobs(engine)
        assert not image_urls_refused(engine)
        engine.image_urls_refused = True  # what generate records when the server refuses images
        assert image_urls_refused(engine)
    finally:
        engine.close()


def test_the_scripted_engine_has_no_optional_feature() -> None:
    from askgpt.vision.pipeline import target_model

    engine = ScriptedEngine()
    assert not any(isinstance(engine, p) for p in ALL)
    assert gives_logprobs(engine) and not image_urls_refused(engine)
    with pytest.raises(UsageError, match="cannot run a vision projector"):
        target_model(engine, Path("scripted.gguf"), Path("mmproj.gguf"), threads=1)
    assert target_model(engine, Path("scripted.gguf"), None, threads=1).data_urls is False


@pytest.mark.model
def test_the_llama_engine_has_the_local_features(real_engine: Any) -> None:
    from askgpt.runtime.models.registry import builtin_model

    assert is_local(builtin_model()) and kind_of(builtin_model()).name == "llama.cpp"
    assert [p.__name__ for p in ALL if isinstance(real_engine, p)] == [
        "VisionProjector", "PromptLookupCounters", "PrefixCacheEvents"]
    assert gives_logprobs(real_engine) and not image_urls_refused(real_engine)
    assert real_engine.cache_events is None  # loaded without an on-disk prefix cache
