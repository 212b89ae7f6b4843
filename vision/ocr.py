"""Text in the image: PP-OCR (detector, angle classifier, recogniser) on ONNX Runtime.

The models ship inside the ``rapidocr-onnxruntime`` wheel, so this works
offline. That package supports Python < 3.13; on newer Pythons it is not
installed and OCR reports itself unavailable (images still get the
classifier's labels). RapidOCR runs the recogniser only on the boxes its
detector finds, so an image with no text costs one detector pass.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from askgpt.runtime.errors import ImageError
from askgpt.vision.encoder import ImageFeatures, session_options
from askgpt.vision.images import LoadedImage

ENCODER_NAME = "pp-ocr"
MIN_SCORE = 0.5  # recogniser confidence below which a line is dropped


@dataclass(frozen=True)
class TextBox:
    text: str
    score: float
    top: float
    bottom: float
    left: float


def ocr_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


_LETTER_DIGIT = re.compile(r"(?<=[A-Za-z]{3})(?=\d)|(?<=\d)(?=[A-Za-z]{3})")


def respace(text: str) -> str:
    """PP-OCR's recogniser often drops the space between a word and a number
    ("TOTAL DUE9.85"); put it back, which small language models need to read
    the number as one."""
    return _LETTER_DIGIT.sub(" ", text)


def reading_order(boxes: list[TextBox]) -> list[str]:
    """Lines top to bottom; boxes whose vertical extents overlap by more than half
    the smaller height are one row, joined left to right."""
    rows: list[list[TextBox]] = []
    for box in sorted(boxes, key=lambda b: (b.top, b.left)):
        if rows:
            row = rows[-1]
            top = min(b.top for b in row)
            bottom = max(b.bottom for b in row)
            overlap = min(bottom, box.bottom) - max(top, box.top)
            if overlap > 0.5 * min(bottom - top, box.bottom - box.top):
                row.append(box)
                continue
        rows.append([box])
    return ["   ".join(b.text for b in sorted(row, key=lambda b: b.left)) for row in rows]


class OcrReader:
    """`ImageEncoder` for text. Sessions are created once and reused for every image."""

    def __init__(self, *, threads: int, min_score: float = MIN_SCORE) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise ImageError("OCR is not installed (rapidocr-onnxruntime supports Python < 3.13)",
                             hint="use --ocr off, or run askgpt on Python 3.10-3.12") from exc
        self._engine: Any = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)
        self._no_spinning(threads)
        self._min_score = min_score

    def _no_spinning(self, threads: int) -> None:
        """RapidOCR's config has no spinning switch: rebuild its sessions with ours."""
        import onnxruntime as ort

        for part, attr in (("text_det", "infer"), ("text_cls", "infer"), ("text_rec", "session")):
            holder = getattr(getattr(self._engine, part, None), attr, None)
            session = getattr(holder, "session", None)
            path = getattr(session, "_model_path", None)
            if holder is None or not path:
                continue
            holder.session = ort.InferenceSession(path, sess_options=session_options(threads),
                                                  providers=["CPUExecutionProvider"])

    @property
    def name(self) -> str:
        return ENCODER_NAME

    def encode(self, image: LoadedImage) -> ImageFeatures:
        start = time.perf_counter()
        # RapidOCR works on BGR arrays (OpenCV order).
        result, _ = self._engine(np.ascontiguousarray(image.pixels[:, :, ::-1]))
        boxes = []
        for points, text, score in result or ():
            score = float(score)
            if score < self._min_score or not str(text).strip():
                continue
            ys = [p[1] for p in points]
            xs = [p[0] for p in points]
            boxes.append(TextBox(respace(str(text).strip()), score, float(min(ys)), float(max(ys)), float(min(xs))))
        return ImageFeatures(ENCODER_NAME, text_lines=tuple(reading_order(boxes)),
                             seconds=time.perf_counter() - start)
