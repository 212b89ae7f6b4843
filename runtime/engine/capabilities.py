"""Optional engine features, as small protocols: what some engines can do beyond the `Engine`
seam. A caller asks ``isinstance(engine, VisionProjector)`` rather than probing for an
attribute by name, so a feature is named, typed and findable in one place, and a third-party
engine gets a feature by having its members (no base class to inherit).

Which engine has what today: the llama.cpp engine (runtime/engine/llama) is a
`VisionProjector`, `PromptLookupCounters`, `PrefixCacheEvents`; the served engine
(runtime/engine/served.py) is `Served` and `ImageUrls`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from askgpt.runtime.engine.base import PromptPart
    from askgpt.runtime.engine.prefix_cache import CacheEvents


class ProjectorVision(Protocol):
    """A vision projector (mmproj) loaded on an engine's model: an image becomes prompt parts."""

    path: Path

    def segments(self, pixels: Any) -> tuple[PromptPart, ...]:
        """``pixels``: (H, W, 3) uint8 RGB. The image's delimiter tokens and embedding rows."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class VisionProjector(Protocol):
    """Runs a model's own vision projector (``--mmproj``) in this process."""

    def open_vision(self, mmproj: Path, *, threads: int) -> ProjectorVision: ...


@runtime_checkable
class PromptLookupCounters(Protocol):
    """Prompt-lookup decoding's counts in this run (``--stats``): tokens guessed, and kept."""

    lookup_guessed: int
    lookup_kept: int


@runtime_checkable
class PrefixCacheEvents(Protocol):
    """Keeps evaluated prompt prefixes on disk; what that cache did in this run (None: off)."""

    @property
    def cache_events(self) -> CacheEvents | None: ...


@runtime_checkable
class ImageUrls(Protocol):
    """Sends images to its model as data URLs (an OpenAI-compatible server), and remembers
    when the server refused them (the answer was then made without the images)."""

    accepts_image_urls: bool
    image_urls_refused: bool


@runtime_checkable
class Served(Protocol):
    """The model runs on a server: its answers come as text, with no next-token
    log-probabilities (label scoring then uses a grammar instead)."""

    @property
    def endpoint(self) -> str: ...


def gives_logprobs(engine: object) -> bool:
    """Whether ``engine``'s `next_token_logprobs` works (every engine but a served one)."""
    return not isinstance(engine, Served)


def image_urls_refused(engine: object) -> bool:
    """Whether a server refused the images of the last answer."""
    return isinstance(engine, ImageUrls) and engine.image_urls_refused
