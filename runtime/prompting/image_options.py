"""How images reach the model, as values a request carries (`--ocr`, `--image-mode`).

They live here, below askgpt.vision, so that the CLI can offer and check these choices
without importing the image code (a text question loads none of it)."""

from __future__ import annotations

from enum import Enum


class OcrMode(str, Enum):
    AUTO = "auto"  # recognise text where the detector finds some; confident lines only
    ON = "on"  # also report lines the recogniser is less sure of
    OFF = "off"


class ImageMode(str, Enum):
    TEXT = "text"  # the image's text block only
    EMBED = "embed"  # the labels as embedding rows instead of words (OCR text stays text)
    BOTH = "both"
