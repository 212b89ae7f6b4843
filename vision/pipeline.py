"""From image files to what the language model gets: the `ImageBlock` of each image.

Each image is loaded once (images.py), run through an image encoder (a CLIP
encoder set up with `askgpt vision setup`, else the built-in ImageNet
classifier; ``--encoder`` chooses) and OCR unless turned off, and becomes a
delimited block: its size, the encoder's tags with their scores, the text
found in it, and, with ``--image-mode embed|both``, embedding rows from the
projector. A model with its own vision projector (mmproj) sees the image
itself instead: llama.cpp's encoder gives the rows (``native``), and only
OCR's text is added. Encoders are created on first use and reused.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from askgpt.runtime.choices import E, choice
from askgpt.runtime.engine.base import EmbeddingRows, PromptPart
from askgpt.runtime.engine.capabilities import ImageUrls, Served, VisionProjector
from askgpt.runtime.errors import UsageError
from askgpt.runtime.prompting.image_options import ImageMode, OcrMode
from askgpt.runtime.prompting.request import ImageBlock
from askgpt.vision.block import POSSIBLE, FileFacts, describe
from askgpt.vision.clip import MIN_TAG_SCORE
from askgpt.vision.images import LoadedImage, data_url, load_image

# A kind's summed probability below this is noise (a screenshot or a page is no ImageNet
# class) and misleads a small model more than it helps (vision/block.py).
MIN_LABEL_SCORE = POSSIBLE

# Chosen from benchmarks/vision.py on the built-in model (see docs/images.md).
DEFAULT_IMAGE_MODE = ImageMode.TEXT


@dataclass(frozen=True)
class VisionConfig:
    ocr: OcrMode = OcrMode.AUTO
    encoder: str = "auto"  # auto | builtin | clip | the name of a set-up CLIP encoder
    mode: ImageMode = DEFAULT_IMAGE_MODE
    threads: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    top_k: int = 5  # guesses read from the classifier: a kind's probability is summed over them
    people: bool = True  # look for people (faces and bodies): ImageNet has no "person"
    facts: bool = True  # what the file says (EXIF date, camera, GPS) and its main colours
    # Say where a photo was taken (its GPS position) to a served model too; a local one
    # always gets it (nothing leaves the machine).
    share_location: bool = False


@dataclass(frozen=True)
class TargetModel:
    """The language model images are projected into."""

    gguf_path: Path
    n_embd: int
    tokenize: Callable[[str], list[int]]
    # The model's own vision encoder (mmproj): an image to its prompt segments (token ids
    # and embedding rows, in order); None when the model has none.
    native: Callable[[LoadedImage], tuple[PromptPart, ...]] | None = None
    # A served model that may take the image itself (as a data: URL, beside its text block).
    data_urls: bool = False
    # Runs on this machine: what the file says (its GPS position included) never leaves it.
    local: bool = True


@dataclass(frozen=True)
class ImageReport:
    source: str
    encode_seconds: float
    ocr_seconds: float
    rows: int


def parse_mode(value: str, kind: type[E], option: str) -> E:
    return choice(kind, value, option)


class ImagePipeline:
    def __init__(self, config: VisionConfig, cache_dir: Path,
                 notify: Callable[[str], None] | None = None, *, data_dir: Path | None = None) -> None:
        self._config = config
        self._cache_dir = cache_dir
        self._notify = notify
        self._classifier = None
        self._clip_folder: Path | None = None
        self._clip = None
        if data_dir is not None:
            from askgpt.vision.clip import choose_encoder, clip_root

            meta = choose_encoder(data_dir, config.encoder)
            if meta is not None:
                self._clip_folder = clip_root(data_dir) / meta.name
        elif config.encoder not in ("auto", "builtin"):
            raise UsageError(f"--encoder {config.encoder} needs askgpt's data folder")
        self._ocr = None
        self._people = None
        self._warned_no_ocr = False

    def classifier(self):  # type: ignore[no-untyped-def]
        if self._classifier is None:
            from askgpt.vision.classifier import load_classifier

            self._classifier = load_classifier(self._cache_dir, threads=self._config.threads,
                                               notify=self._notify, top_k=self._config.top_k)
        return self._classifier

    def ocr_enabled(self) -> bool:
        """OCR runs unless turned off; with ``auto`` on a Python that cannot install it
        (rapidocr-onnxruntime supports < 3.13), images get the classifier alone and a note."""
        if self._config.ocr is OcrMode.OFF:
            return False
        if self._config.ocr is OcrMode.AUTO:
            from askgpt.vision.ocr import ocr_available

            if not ocr_available():
                if not self._warned_no_ocr and self._notify is not None:
                    self._notify("OCR is not installed on this Python (rapidocr-onnxruntime needs < 3.13); "
                                 "text in images is not read")
                self._warned_no_ocr = True
                return False
        return True

    def ocr(self):  # type: ignore[no-untyped-def]
        if self._ocr is None:
            from askgpt.vision.ocr import MIN_SCORE, OcrReader

            min_score = 0.3 if self._config.ocr is OcrMode.ON else MIN_SCORE
            self._ocr = OcrReader(threads=self._config.threads, min_score=min_score)
        return self._ocr

    def encoder(self):  # type: ignore[no-untyped-def]
        """The chosen image encoder: a set-up CLIP encoder, else the built-in classifier."""
        if self._clip_folder is None:
            return self.classifier()
        if self._clip is None:
            from askgpt.vision.clip import ClipEncoder

            self._clip = ClipEncoder(self._clip_folder, threads=self._config.threads,
                                     top_k=max(self._config.top_k, 5))
            if self._clip.meta.random and self._notify is not None:
                self._notify(f"the CLIP encoder {self._clip.meta.name} has random weights: what it reports "
                             "about images is meaningless (set up real weights with `askgpt vision setup`)")
        return self._clip

    def _projector(self, target: TargetModel):  # type: ignore[no-untyped-def]
        from askgpt.vision.projector import projector_for

        if self._clip_folder is not None:
            from askgpt.vision.projector import trained_projector

            clip = self.encoder()
            projector = trained_projector(self._clip_folder, target.gguf_path, encoder_id=clip.meta.identity)
            if projector is None:
                projector = projector_for(
                    self._cache_dir, lambda: clip.concepts.embeddings, clip.concepts.names, target.gguf_path,
                    target.tokenize, encoder_id=clip.meta.identity, notify=self._notify)
        else:
            from askgpt.vision.classifier import ENCODER_NAME, WEIGHTS_FILE, class_names, classifier_head, data_path

            encoder = self.classifier()
            projector = projector_for(
                self._cache_dir, lambda: classifier_head(data_path(WEIGHTS_FILE))[0], class_names(),
                target.gguf_path, target.tokenize, encoder_id=f"{ENCODER_NAME}-{encoder.weights_sha256}",
                notify=self._notify)
        if projector.n_embd != target.n_embd:
            raise UsageError(f"the projector gives rows of width {projector.n_embd}, "
                             f"but {target.gguf_path.name} takes {target.n_embd}")
        return projector

    def people(self, image: LoadedImage) -> tuple[str | None, int | None]:
        """The people phrase ("two people, at the left and the centre") and how many;
        (None, None) when people are not looked for."""
        if not self._config.people:
            return None, None
        if self._people is None:
            from askgpt.vision.people.finder import PeopleFinder

            self._people = PeopleFinder(self._cache_dir, threads=self._config.threads, notify=self._notify)
        found = self._people.find(image.pixels)
        return found.phrase(), found.count

    def facts(self, image: LoadedImage, target: TargetModel | None) -> FileFacts:
        if not self._config.facts:
            return FileFacts()
        from askgpt.vision.facts.photo import read_facts

        facts = read_facts(image)
        # A served model is told where a photo was taken only when the user says so.
        local = target is None or target.local
        return FileFacts(facts.when(), facts.where() if local or self._config.share_location else None,
                         facts.colour())

    def encode(self, images: Sequence[LoadedImage], target: TargetModel | None, *,
               question: str | None = None) -> tuple[list[ImageBlock], list[ImageReport]]:
        """Each image's block and prompt parts. ``question``: the user's words (the block
        says the file's size and format only when they ask about it)."""
        if target is not None and target.native is not None:
            return self._encode_native(images, target, question)
        mode = self._config.mode
        if mode is not ImageMode.TEXT and target is not None and target.n_embd == 0:
            raise UsageError(f"--image-mode {mode.value} puts embedding rows into a local model; "
                             "a served one gets the images' text blocks (and the images, where it takes them)")
        projector = self._projector(target) if mode is not ImageMode.TEXT and target is not None else None
        floor = MIN_LABEL_SCORE if self._clip_folder is None else MIN_TAG_SCORE
        blocks, reports = [], []
        for image in images:
            labels = self.encoder().encode(image)
            text = self.ocr().encode(image) if self.ocr_enabled() else None
            rows = (projector.rows(labels.pooled, labels.class_ids, labels.regions)
                    if projector is not None else None)
            people, count = self.people(image)
            body = describe(image, labels if mode is not ImageMode.EMBED else None, text, min_score=floor,
                            imagenet=self._clip_folder is None, people=people, people_count=count,
                            facts=self.facts(image, target), question=question)
            url = data_url(image) if target is not None and target.data_urls else None
            # The file's name, not its folders: a long temporary path only distracts a small model.
            blocks.append(ImageBlock(Path(image.source).name or image.source, body,
                                     () if rows is None else (EmbeddingRows(rows),), data_url=url))
            reports.append(ImageReport(image.source, labels.seconds, text.seconds if text else 0.0,
                                       0 if rows is None else len(rows)))
        return blocks, reports

    def _encode_native(self, images: Sequence[LoadedImage], target: TargetModel,
                       question: str | None) -> tuple[list[ImageBlock], list[ImageReport]]:
        assert target.native is not None
        blocks, reports = [], []
        for image in images:
            started = time.perf_counter()
            segments = target.native(image)
            seconds = time.perf_counter() - started
            text = self.ocr().encode(image) if self.ocr_enabled() else None
            # The model sees the image itself: the block adds what its own encoder cannot
            # know (the text, the file's facts), not guesses of another encoder.
            body = describe(image, None, text, facts=self.facts(image, target), question=question)
            blocks.append(ImageBlock(Path(image.source).name or image.source, body, segments=segments))
            reports.append(ImageReport(image.source, seconds, text.seconds if text else 0.0,
                                       sum(len(s) for s in segments if isinstance(s, EmbeddingRows))))
        return blocks, reports


def target_model(engine: Any, model_path: Path, mmproj: Path | None, *, threads: int) -> TargetModel:
    """The language model images go into; with a vision projector (mmproj) its own encoder
    (llama.cpp's mtmd, through the engine) makes the rows."""
    native = None
    if mmproj is not None:
        if not isinstance(engine, VisionProjector):
            raise UsageError("this engine cannot run a vision projector (--mmproj)")
        vision = engine.open_vision(mmproj, threads=threads)
        native = lambda image: vision.segments(image.pixels)  # noqa: E731
    return TargetModel(model_path, engine.info.n_embd,
                       lambda text: engine.tokenize(text, add_bos=False, special=False), native,
                       data_urls=isinstance(engine, ImageUrls) and engine.accepts_image_urls,
                       local=not isinstance(engine, Served))


def load_images(paths: Sequence[str], stdin_image: bytes | None) -> list[LoadedImage]:
    """Every image the command line names, validated, before any model is loaded."""
    return [load_image(p, stdin=stdin_image) for p in paths]
