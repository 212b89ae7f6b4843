"""The built-in image encoder: torchvision's ImageNet MobileNetV2 on ONNX Runtime.

The weights ship with askgpt (vision/data). On first use the ONNX graph is
built from them (no torch) and cached in askgpt's cache folder, keyed by the
weights' hash and written atomically; later runs load the cached file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from askgpt.runtime.errors import ImageError
from askgpt.runtime.files import atomic_write_bytes, atomic_write_with, sha256_file
from askgpt.vision.encoder import ImageFeatures, Label, session_options
from askgpt.vision.images import LoadedImage
from askgpt.vision.mobilenet import build_onnx, preprocess
from askgpt.vision.torch_pickle import load_legacy_state_dict

WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
CLASSES_FILE = "imagenet_classes.txt"
ENCODER_NAME = "mobilenet_v2"
GRAPH_VERSION = 2  # bump when build_onnx changes the graph, so cached files are rebuilt


def data_path(name: str) -> Path:
    return Path(str(resources.files("askgpt.vision") / "data" / name))


@lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    names = data_path(CLASSES_FILE).read_text(encoding="utf-8").splitlines()
    return tuple(n for n in names if n)


@dataclass(frozen=True)
class ClassifierFiles:
    onnx: Path
    weights_sha256: str


def weights_identity(weights: Path) -> str:
    return sha256_file(weights)


def ensure_onnx(cache_dir: Path, *, weights: Path | None = None,
                notify: Callable[[str], None] | None = None) -> ClassifierFiles:
    """The cached ONNX graph for ``weights``, built on first use."""
    weights = weights or data_path(WEIGHTS_FILE)
    digest = weights_identity(weights)
    path = cache_dir / "vision" / f"{ENCODER_NAME}-{digest[:16]}-g{GRAPH_VERSION}.onnx"
    if not path.is_file():
        if notify is not None:
            notify("building the image encoder from its weights (once; cached in "
                   f"{path.parent})")
        atomic_write_bytes(path, build_onnx(load_legacy_state_dict(weights)))
    return ClassifierFiles(path, digest)


class MobileNetClassifier:
    """`ImageEncoder`: ImageNet top-k labels with probabilities, and the pooled feature."""

    def __init__(self, onnx_path: Path, *, threads: int, top_k: int = 5, weights_sha256: str = "") -> None:
        import onnxruntime as ort

        self.weights_sha256 = weights_sha256  # identifies the encoder, e.g. for projector fits
        try:
            self._session = ort.InferenceSession(str(onnx_path), sess_options=session_options(threads),
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ImageError(f"cannot load the image encoder {onnx_path}: {exc}",
                             hint="delete the file; askgpt rebuilds it") from exc
        self._top_k = top_k
        self._classes = class_names()

    @property
    def name(self) -> str:
        return ENCODER_NAME

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw graph outputs for preprocessed (N, 3, 224, 224) input: logits, features."""
        logits, features = self._session.run(["logits", "features"], {"pixel_values": batch})
        return logits, features

    def encode(self, image: LoadedImage) -> ImageFeatures:
        start = time.perf_counter()
        logits, features = self.run(preprocess(image.pixels)[None])
        probs = _softmax(logits[0])
        top = np.argsort(-probs)[: self._top_k]
        labels = tuple(Label(self._classes[i], float(probs[i])) for i in top)
        return ImageFeatures(ENCODER_NAME, labels=labels, pooled=features[0].astype(np.float32),
                             class_ids=tuple(int(i) for i in top), seconds=time.perf_counter() - start)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def classifier_head(weights: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The final layer: class vectors (1000, 1280) and biases, for the projector fit."""
    state = load_legacy_state_dict(weights or data_path(WEIGHTS_FILE))
    return state["classifier.1.weight"].astype(np.float32), state["classifier.1.bias"].astype(np.float32)


# Quantized one at a time, these two full-resolution stem convolutions move the logits
# most (mean KL from fp32 0.26 and 0.11 on the labelled photos; the next is 0.04), and
# with them in int8 one photo's top-1 flips. Kept fp32, they cost under 0.1 ms.
FP32_NODES = ("features.0.0.conv", "features.1.conv.0.0.conv")


def calibration_reader(calibration: list[np.ndarray]) -> Any:
    """onnxruntime's calibration input: the preprocessed (3, 224, 224) images, one batch each."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._batches, None)
            return None if x is None else {"pixel_values": x[None].astype(np.float32)}

    return Reader()


def quantize_int8(fp32: Path, out: Path, calibration: list[np.ndarray]) -> None:
    """A static int8 variant (QDQ, per-channel weights, the stem in fp32), calibrated
    on preprocessed (3, 224, 224) images, written atomically. benchmarks/vision.py
    measures it against fp32; askgpt uses fp32 by default (see docs/images.md)."""
    import tempfile

    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    def write(tmp: Path) -> None:
        # onnxruntime's recommended pre-pass (shape inference, graph cleanup): about
        # 2% faster int8 at 2 threads in one interleaved run (0.51 -> 0.50 of fp32).
        with tempfile.TemporaryDirectory() as work:
            prepared = Path(work) / "prepared.onnx"
            quant_pre_process(str(fp32), str(prepared))
            quantize_static(str(prepared), str(tmp), calibration_reader(calibration), quant_format=QuantFormat.QDQ,
                            per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            nodes_to_exclude=list(FP32_NODES))

    atomic_write_with(out, write)


def load_classifier(cache_dir: Path, *, threads: int, notify: Callable[[str], None] | None = None,
                    **kwargs: Any) -> MobileNetClassifier:
    files = ensure_onnx(cache_dir, notify=notify)
    return MobileNetClassifier(files.onnx, threads=threads, weights_sha256=files.weights_sha256, **kwargs)
