"""From image files to what the language model gets: the `ImageBlock` of each image.

Each image is loaded once (images.py), run through the built-in encoders
(the ImageNet classifier, and OCR unless turned off), and becomes a
delimited block: its size, the classifier's guesses with their scores, the
text found in it, and, with ``--image-mode embed|both``, embedding rows from
the projector. Encoders are created on first use and reused for every image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from askgpt.runtime.errors import UsageError
from askgpt.runtime.prompt import ImageBlock

from .encoder import ImageFeatures
from .images import LoadedImage, load_image


class OcrMode(str, Enum):
    AUTO = "auto"  # recognise text where the detector finds some; confident lines only
    ON = "on"  # also report lines the recogniser is less sure of
    OFF = "off"


class ImageMode(str, Enum):
    TEXT = "text"  # the image's text block only
    EMBED = "embed"  # the labels as embedding rows instead of words (OCR text stays text)
    BOTH = "both"


# Guesses below this are noise (a screenshot or a page is no ImageNet class) and
# mislead a small model more than they help.
MIN_LABEL_SCORE = 0.10
MIN_LABEL_SCORE_WITH_TEXT = 0.50

# Chosen from benchmarks/vision.py on the built-in model (see README, "Images").
DEFAULT_IMAGE_MODE = ImageMode.TEXT


@dataclass(frozen=True)
class VisionConfig:
    ocr: OcrMode = OcrMode.AUTO
    mode: ImageMode = DEFAULT_IMAGE_MODE
    threads: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    top_k: int = 3


@dataclass(frozen=True)
class TargetModel:
    """The language model images are projected into."""

    gguf_path: Path
    n_embd: int
    tokenize: Callable[[str], list[int]]


@dataclass(frozen=True)
class ImageReport:
    source: str
    encode_seconds: float
    ocr_seconds: float
    rows: int


def parse_mode(value: str, kind: type[Enum], option: str) -> Enum:
    try:
        return kind(value.lower())
    except ValueError:
        choices = "|".join(m.value for m in kind)  # type: ignore[attr-defined]
        raise UsageError(f"{option} must be one of {choices}, not {value!r}") from None


def describe(image: LoadedImage, labels: ImageFeatures | None, text: ImageFeatures | None) -> str:
    """The image's text block, worded so that even the 135M built-in model reads it as
    facts about the picture (benchmarks/vision.py). Labels keep their scores: ImageNet
    has 1000 fine classes (no plain "person" or "horse"), so they are likely, not certain."""
    first = f"A {image.width}x{image.height} {image.format} image."
    # A page, receipt or screenshot is no ImageNet object: where there is text, only a
    # confident guess is worth the model's attention.
    floor = MIN_LABEL_SCORE_WITH_TEXT if text is not None and text.text_lines else MIN_LABEL_SCORE
    likely = [lab for lab in labels.labels if lab.score >= floor] if labels is not None else []
    if likely:
        guesses = ", ".join(f"{lab.name} ({lab.score:.0%})" for lab in likely)
        first += f" It most likely shows: {guesses}."
    lines = [first]
    if text is not None:
        if text.text_lines:
            lines.append("Text in it:")
            lines.extend(text.text_lines)
        else:
            lines.append("No text in it.")
    return "\n".join(lines)


class ImagePipeline:
    def __init__(self, config: VisionConfig, cache_dir: Path,
                 notify: Callable[[str], None] | None = None) -> None:
        self._config = config
        self._cache_dir = cache_dir
        self._notify = notify
        self._classifier = None
        self._ocr = None
        self._warned_no_ocr = False

    def classifier(self):  # type: ignore[no-untyped-def]
        if self._classifier is None:
            from .classifier import load_classifier

            self._classifier = load_classifier(self._cache_dir, threads=self._config.threads,
                                               notify=self._notify, top_k=self._config.top_k)
        return self._classifier

    def ocr_enabled(self) -> bool:
        """OCR runs unless turned off; with ``auto`` on a Python that cannot install it
        (rapidocr-onnxruntime supports < 3.13), images get the classifier alone and a note."""
        if self._config.ocr is OcrMode.OFF:
            return False
        if self._config.ocr is OcrMode.AUTO:
            from .ocr import ocr_available

            if not ocr_available():
                if not self._warned_no_ocr and self._notify is not None:
                    self._notify("OCR is not installed on this Python (rapidocr-onnxruntime needs < 3.13); "
                                 "text in images is not read")
                self._warned_no_ocr = True
                return False
        return True

    def ocr(self):  # type: ignore[no-untyped-def]
        if self._ocr is None:
            from .ocr import MIN_SCORE, OcrReader

            min_score = 0.3 if self._config.ocr is OcrMode.ON else MIN_SCORE
            self._ocr = OcrReader(threads=self._config.threads, min_score=min_score)
        return self._ocr

    def _projector(self, target: TargetModel):  # type: ignore[no-untyped-def]
        from .classifier import ENCODER_NAME, WEIGHTS_FILE, class_names, classifier_head, data_path
        from .projector import projector_for

        encoder = self.classifier()
        projector = projector_for(
            self._cache_dir, lambda: classifier_head(data_path(WEIGHTS_FILE))[0], class_names(), target.gguf_path,
            target.tokenize, encoder_id=f"{ENCODER_NAME}-{encoder.weights_sha256}", notify=self._notify)
        if projector.n_embd != target.n_embd:
            raise UsageError(f"the projector gives rows of width {projector.n_embd}, "
                             f"but {target.gguf_path.name} takes {target.n_embd}")
        return projector

    def encode(self, images: Sequence[LoadedImage], target: TargetModel | None) -> tuple[
            list[ImageBlock], list[ImageReport]]:
        mode = self._config.mode
        projector = self._projector(target) if mode is not ImageMode.TEXT and target is not None else None
        blocks, reports = [], []
        for image in images:
            labels = self.classifier().encode(image)
            text = self.ocr().encode(image) if self.ocr_enabled() else None
            rows = projector.rows(labels.pooled, labels.class_ids) if projector is not None else None
            body = describe(image, labels if mode is not ImageMode.EMBED else None, text)
            # The file's name, not its folders: a long temporary path only distracts a small model.
            blocks.append(ImageBlock(Path(image.source).name or image.source, body, rows))
            reports.append(ImageReport(image.source, labels.seconds, text.seconds if text else 0.0,
                                       0 if rows is None else len(rows)))
        return blocks, reports


def load_images(paths: Sequence[str], stdin_image: bytes | None) -> list[LoadedImage]:
    """Every image the command line names, validated, before any model is loaded."""
    return [load_image(p, stdin=stdin_image) for p in paths]
