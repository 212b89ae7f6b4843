"""The MTCNN cascade in numpy on ONNX Runtime.

1. P-Net slides a 12x12 window (stride 2) over an image pyramid (factor 0.709, from
   the scale where the smallest wanted face becomes 12 px) and proposes boxes where
   its face probability passes 0.6; non-maximum suppression (NMS) per scale (0.5)
   and across scales (0.7), then the boxes move by P-Net's regression and become squares.
2. R-Net scores each proposal's 24x24 crop: kept above 0.7, NMS 0.7, regression, squares.
3. O-Net scores 48x48 crops: kept above 0.7, regression, five landmarks, and NMS
   (0.7 of the smaller box's area) so that a face inside a larger one is one face.

These are the thresholds of the published cascade (Zhang et al. 2016, and the ports
that load these weights); callers apply their own, measured threshold on O-Net's
probability. Images are first scaled to at most ``MAX_SIDE`` pixels: the pyramid's
cost grows with the area, and a face smaller than ``MIN_FACE`` there says little.

The three graphs are built from the weights shipped in askgpt.vision/data on first
use and cached in askgpt's cache folder, keyed by the weights' hashes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from askgpt.runtime.errors import ImageError
from askgpt.runtime.files import atomic_write_bytes, sha256_file
from askgpt.vision.classifier import data_path
from askgpt.vision.encoder import session_options
from askgpt.vision.people.nets import Net, build_onnx, load_state, to_input

GRAPH_VERSION = 1  # bump when build_onnx changes a graph, so cached files are rebuilt
WEIGHTS = {net: f"mtcnn_{net.value}.pt" for net in Net}

MAX_SIDE = 640
MIN_FACE = 24  # pixels, in the image scaled to MAX_SIDE
PYRAMID_FACTOR = 0.709
STAGE_THRESHOLDS = (0.6, 0.7, 0.7)
NMS_WITHIN_SCALE = 0.5
NMS_THRESHOLDS = (0.7, 0.7, 0.7)
CELL, STRIDE = 12, 2  # P-Net's window and step


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the input image's pixels
    score: float  # O-Net's face probability
    landmarks: tuple[tuple[float, float], ...]  # (x, y): eyes, nose, mouth corners


@dataclass(frozen=True)
class FaceModels:
    """The cached ONNX files, one per network."""

    paths: dict[Net, Path]


@lru_cache(maxsize=4)
def _weights_digest(path: Path) -> str:
    return sha256_file(path)


def ensure_onnx(cache_dir: Path, *, notify: Callable[[str], None] | None = None) -> FaceModels:
    """The cached ONNX graphs, built from the shipped weights on first use."""
    paths: dict[Net, Path] = {}
    for net in Net:
        weights = data_path(WEIGHTS[net])
        digest = _weights_digest(weights)
        path = cache_dir / "vision" / f"mtcnn-{net.value}-{digest[:16]}-g{GRAPH_VERSION}.onnx"
        if not path.is_file():
            if notify is not None and net is Net.PNET:
                notify(f"building the face detector from its weights (once; cached in {path.parent})")
            atomic_write_bytes(path, build_onnx(net, load_state(net, weights)))
        paths[net] = path
    return FaceModels(paths)


def build_in_memory() -> dict[Net, bytes]:
    """The three graphs without a cache folder (tests, one-off use)."""
    return {net: build_onnx(net, load_state(net, data_path(WEIGHTS[net]))) for net in Net}


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, *, by_min: bool = False) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best first. Overlap is
    intersection over union, or over the smaller box's area with ``by_min``."""
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + 1)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if by_min else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return np.array(keep, dtype=np.int64)


def calibrate(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move each box's corners by the network's offsets, in units of the box's size."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes + offsets * np.stack([w, h, w, h], axis=1)


def square(boxes: np.ndarray) -> np.ndarray:
    """The square around each box's centre with its longer side, on whole pixels."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    side = np.maximum(w, h)
    x0 = boxes[:, 0] + w / 2 - side / 2
    y0 = boxes[:, 1] + h / 2 - side / 2
    return np.round(np.stack([x0, y0, x0 + side - 1, y0 + side - 1], axis=1))


def crops(rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Each box cut from the image (zeros outside it), resized to size x size:
    (N, size, size, 3) float32."""
    from PIL import Image

    height, width = rgb.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), dtype=np.float32)
    for n, (x0, y0, x1, y1) in enumerate(boxes.astype(np.int64)):
        w, h = x1 - x0 + 1, y1 - y0 + 1
        if w < 1 or h < 1:
            continue
        patch = np.zeros((h, w, 3), dtype=np.uint8)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)
        if sx1 >= sx0 and sy1 >= sy0:
            patch[sy0 - y0:sy1 - y0 + 1, sx0 - x0:sx1 - x0 + 1] = rgb[sy0:sy1 + 1, sx0:sx1 + 1]
        out[n] = np.asarray(Image.fromarray(patch).resize((size, size), Image.Resampling.BILINEAR), np.float32)
    return out


def pyramid_scales(height: int, width: int, min_face: float = MIN_FACE) -> list[float]:
    """Scales at which P-Net's 12 px window matches faces from ``min_face`` pixels up
    to the image's shorter side."""
    m = CELL / min_face
    scales: list[float] = []
    side = min(height, width) * m
    while side >= CELL:
        scales.append(m * PYRAMID_FACTOR ** len(scales))
        side *= PYRAMID_FACTOR
    return scales


def proposals(probs: np.ndarray, offsets: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """P-Net's map cells above ``threshold`` as boxes in the unscaled image:
    (N, 9) rows of x0, y0, x1, y1, score, four offsets."""
    ys, xs = np.nonzero(probs > threshold)
    if ys.size == 0:
        return np.zeros((0, 9), dtype=np.float32)
    boxes = np.stack([np.round((STRIDE * xs + 1) / scale), np.round((STRIDE * ys + 1) / scale),
                      np.round((STRIDE * xs + 1 + CELL) / scale), np.round((STRIDE * ys + 1 + CELL) / scale)],
                     axis=1)
    return np.concatenate([boxes, probs[ys, xs][:, None], offsets[:, ys, xs].T], axis=1).astype(np.float32)


class FaceDetector:
    """MTCNN on ONNX Runtime. ``models`` maps each network to its ONNX file or bytes."""

    def __init__(self, models: dict[Net, Path] | dict[Net, bytes], *, threads: int) -> None:
        import onnxruntime as ort

        self._sessions = {}
        for net, model in models.items():
            try:
                source = str(model) if isinstance(model, Path) else model
                self._sessions[net] = ort.InferenceSession(source, sess_options=session_options(threads),
                                                           providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
                raise ImageError(f"cannot load the face detector's {net.value} graph: {exc}",
                                 hint="delete askgpt's cache folder's vision/mtcnn-* files; askgpt rebuilds them") \
                    from exc
        self.seconds = 0.0  # time spent in the last detect()

    def run(self, net: Net, x: np.ndarray) -> dict[str, np.ndarray]:
        """One network's raw outputs for preprocessed (N, 3, H, W) input."""
        session = self._sessions[net]
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, {"image": x}), strict=True))

    def detect(self, rgb: np.ndarray, *, min_face: float = MIN_FACE) -> tuple[Face, ...]:
        """Faces in an (H, W, 3) uint8 RGB image, best first, with O-Net's probability."""
        from PIL import Image

        start = time.perf_counter()
        height, width = rgb.shape[:2]
        shrink = min(1.0, MAX_SIDE / max(height, width))
        image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
        if shrink < 1.0:
            image = image.resize((max(1, round(width * shrink)), max(1, round(height * shrink))),
                                 Image.Resampling.BILINEAR)
        small = np.asarray(image)
        faces = self._cascade(image, small, min_face)
        result = tuple(
            Face(box=tuple(float(v) / shrink for v in row[:4]), score=float(row[4]),  # type: ignore[arg-type]
                 landmarks=tuple((float(x) / shrink, float(y) / shrink) for x, y in marks))
            for row, marks in faces)
        self.seconds = time.perf_counter() - start
        return result

    def _cascade(self, image: Any, small: np.ndarray, min_face: float) -> list[tuple[np.ndarray, np.ndarray]]:
        from PIL import Image

        height, width = small.shape[:2]
        found = []
        for scale in pyramid_scales(height, width, min_face):
            sw, sh = math.ceil(width * scale), math.ceil(height * scale)
            scaled = np.asarray(image.resize((sw, sh), Image.Resampling.BILINEAR))
            out = self.run(Net.PNET, to_input(scaled))
            boxes = proposals(out["probs"][0, 1], out["offsets"][0], scale, STAGE_THRESHOLDS[0])
            if len(boxes):
                found.append(boxes[nms(boxes[:, :4], boxes[:, 4], NMS_WITHIN_SCALE)])
        if not found:
            return []
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], NMS_THRESHOLDS[0])]
        candidates = square(calibrate(boxes[:, :4], boxes[:, 5:9]))

        out = self.run(Net.RNET, to_input(crops(small, candidates, 24)))
        keep = out["probs"][:, 1] > STAGE_THRESHOLDS[1]
        candidates, scores, offsets = candidates[keep], out["probs"][keep, 1], out["offsets"][keep]
        if not len(candidates):
            return []
        kept = nms(candidates, scores, NMS_THRESHOLDS[1])
        candidates = square(calibrate(candidates[kept], offsets[kept]))

        out = self.run(Net.ONET, to_input(crops(small, candidates, 48)))
        keep = out["probs"][:, 1] > STAGE_THRESHOLDS[2]
        candidates, scores = candidates[keep], out["probs"][keep, 1]
        offsets, marks = out["offsets"][keep], out["landmarks"][keep]
        if not len(candidates):
            return []
        w = (candidates[:, 2] - candidates[:, 0] + 1)[:, None]
        h = (candidates[:, 3] - candidates[:, 1] + 1)[:, None]
        points = np.stack([candidates[:, :1] + w * marks[:, :5], candidates[:, 1:2] + h * marks[:, 5:]], axis=2)
        boxes = calibrate(candidates, offsets)
        kept = nms(boxes, scores, NMS_THRESHOLDS[2], by_min=True)
        return [(np.append(boxes[i], scores[i]), points[i]) for i in kept]


def load_face_detector(cache_dir: Path | None, *, threads: int,
                       notify: Callable[[str], None] | None = None) -> FaceDetector:
    """The detector on the cached graphs (built on first use), or on graphs built in
    memory when there is no cache folder."""
    if cache_dir is None:
        return FaceDetector(build_in_memory(), threads=threads)
    return FaceDetector(ensure_onnx(cache_dir, notify=notify).paths, threads=threads)
