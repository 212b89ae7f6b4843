"""The image-encoder seam: an RGB image in, what the language model can use out.

An encoder reports what it sees as scored labels and/or text lines (the
image's text block), and may hand back a pooled feature vector that a
projector maps into the language model's embedding space (embedding rows).
The built-in MobileNetV2 classifier, the OCR reader and the CLIP encoders
(clip.py) implement it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from askgpt.vision.images import LoadedImage


@dataclass(frozen=True)
class Label:
    name: str
    score: float  # a probability in [0, 1]


@dataclass(frozen=True, eq=False)
class ImageFeatures:
    encoder: str
    labels: tuple[Label, ...] = ()
    text_lines: tuple[str, ...] = ()
    pooled: np.ndarray | None = None  # (d,) float32, for a projector
    class_ids: tuple[int, ...] = ()  # the labels' indices in the encoder's vocabulary
    regions: np.ndarray | None = None  # (k, d) pooled embeddings of image regions (CLIP)
    seconds: float = 0.0


class ImageEncoder(Protocol):
    @property
    def name(self) -> str: ...

    def encode(self, image: LoadedImage) -> ImageFeatures: ...


def session_options(threads: int) -> object:
    """onnxruntime options for sharing the CPU with llama.cpp: a fixed thread
    count and no spinning (idle ORT threads would otherwise busy-wait and slow
    the language model)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts
