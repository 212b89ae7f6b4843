"""People in a photo: faces (MTCNN, ``askgpt.vision.people``) and whole upright bodies
(OpenCV 4.x's HOG people detector), merged into one count with rough positions.

ImageNet has no "person" class, so the classifier alone never says a photo has
people in it. A face found inside a body box is one person, not two.

Thresholds, measured with this code (faces: images scaled to at most 640 px, O-Net
probability; bodies: images scaled to at most 640 px, HOG SVM weight after OpenCV's
grouping):
- Faces. Real faces: astronaut 1.0000, camera 0.9999, matplotlib's grace_hopper
  0.9998, two mirrored astronauts side by side 0.9999 and 0.9996, the astronaut at
  200 px 0.9997; scikit-image's 100 LFW faces (25 px, grey, enlarged to 100 px on a
  240 px canvas) all found, min 0.917, 5th percentile 0.984, 10th 0.990. False faces
  on 23 person-free scikit-image photos in 6 variants each (as is, mirrored, half
  and 1.5x size, two 60% crops; 138 images): 8 above O-Net's 0.7, the highest 0.976
  (gravel at 1.5x), then 0.944 and 0.888 (motorcycles); none on LFW's 100 non-faces.
  ``FACE_THRESHOLD`` 0.99 sits above every false face (logit 4.6 against 3.7).
- Bodies. HOG's weights do not separate people from clutter: on the same 138
  person-free images its highest false weights were 1.44 (a text page), 1.32 (a
  logo), 1.16 (a CT phantom); on the astronaut it fires on the helmet (0.60), not on
  her (HOG's 64x128 window wants a whole upright body, which a portrait is not);
  people elsewhere measured 0.7-1.55, and a rendered receipt (tests/rendered_images.py)
  reached 1.71. So a body box alone counts only at ``BODY_ALONE_THRESHOLD`` 2.5, above
  every weight measured on anything, people included: in practice people are counted by
  their faces, and a weaker body box (from ``BODY_WITH_FACE_THRESHOLD``) only gives a
  found face its body. Someone seen only from behind is therefore not reported: that
  needs a real person detector, which no weights that install offline provide here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

FACE_THRESHOLD = 0.99
BODY_ALONE_THRESHOLD = 2.5
BODY_WITH_FACE_THRESHOLD = 0.3
BODY_MAX_SIDE = 640  # HOG's cost grows with the area: ~50 ms at 640 px on 2 shared cores
HOG_WINDOW = (64, 128)  # width, height of the default people detector's window
BODY_NMS = 0.7  # overlap (of the smaller box) above which two body boxes are one person

_NUMBERS = ("no", "a", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


class Position(Enum):
    LEFT = "left"
    CENTRE = "centre"
    RIGHT = "right"


class Evidence(Enum):
    FACE = "face"
    BODY = "body"
    FACE_AND_BODY = "face and body"


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the image's width and height


@dataclass(frozen=True)
class Person:
    box: Box
    position: Position
    evidence: Evidence
    face_score: float | None  # O-Net's face probability, 0..1
    body_score: float | None  # HOG's SVM weight (unbounded; see the module's measurements)

    @property
    def confidence(self) -> float:
        """0..1: the face's probability, or for a body alone how far its weight passes
        the threshold (1.6 -> 0.5, 3.2 -> 1.0)."""
        if self.face_score is not None:
            return self.face_score
        return min(1.0, (self.body_score or 0.0) / (2 * BODY_ALONE_THRESHOLD))


@dataclass(frozen=True)
class People:
    persons: tuple[Person, ...]  # left to right
    faces: int  # how many of them show a face
    body_detector: bool  # False where OpenCV's HOG is unavailable (faces only)
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return len(self.persons)

    @property
    def positions(self) -> tuple[str, ...]:
        return tuple(p.position.value for p in self.persons)

    @property
    def confidences(self) -> tuple[float, ...]:
        return tuple(p.confidence for p in self.persons)

    def phrase(self) -> str | None:
        """"a person, at the centre"; "two people, at the left and the centre"; None without people."""
        if not self.persons:
            return None
        n = self.count
        head = "a person" if n == 1 else f"{_NUMBERS[n] if n < len(_NUMBERS) else n} people"
        where = [pos for pos in Position if pos in {p.position for p in self.persons}]
        places = [f"the {pos.value}" for pos in where]
        joined = places[0] if len(places) == 1 else ", ".join(places[:-1]) + " and " + places[-1]
        return f"{head}, at {joined}"


def position_of(box: Box) -> Position:
    centre = (box[0] + box[2]) / 2
    return Position.LEFT if centre < 1 / 3 else Position.CENTRE if centre < 2 / 3 else Position.RIGHT


def hog_detector() -> Any | None:
    """OpenCV's default people detector, or None where this OpenCV lacks it (5.x
    moved HOG out of the main wheel) or OpenCV is not installed."""
    try:
        import cv2

        hog = cv2.HOGDescriptor()
        hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        return hog
    except Exception:  # ImportError, AttributeError, cv2.error: any of them means "faces only"
        return None


def detect_bodies(hog: Any, rgb: np.ndarray) -> list[tuple[Box, float]]:
    """Upright whole bodies: (box as fractions, HOG weight), overlapping ones merged."""
    import cv2

    from askgpt.vision.people.detector import nms

    height, width = rgb.shape[:2]
    f = min(1.0, BODY_MAX_SIDE / max(height, width))
    small = rgb if f == 1.0 else cv2.resize(rgb, (max(1, round(width * f)), max(1, round(height * f))),
                                            interpolation=cv2.INTER_AREA)
    if small.shape[0] < HOG_WINDOW[1] or small.shape[1] < HOG_WINDOW[0]:
        # No upright body fits, and OpenCV 4's detectMultiScale crashes the process (SIGSEGV,
        # measured on a 300x93 image) when the image is smaller than its window.
        return []
    # HOG takes the largest gradient over the channels, so RGB and BGR order give the same boxes.
    rects, weights = hog.detectMultiScale(np.ascontiguousarray(small), winStride=(8, 8), padding=(8, 8), scale=1.05)
    if len(rects) == 0:
        return []
    rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(weights, dtype=np.float64).ravel()
    boxes = np.stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2], rects[:, 1] + rects[:, 3]], axis=1)
    sh, sw = small.shape[:2]
    return [((float(boxes[i, 0] / sw), float(boxes[i, 1] / sh), float(boxes[i, 2] / sw), float(boxes[i, 3] / sh)),
             float(scores[i])) for i in nms(boxes, scores, BODY_NMS, by_min=True)]


def _inside(face: Box, body: Box) -> bool:
    """A face belongs to a body when its centre lies in the body box's upper half."""
    cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    return body[0] <= cx <= body[2] and body[1] <= cy <= (body[1] + body[3]) / 2


def merge(faces: list[tuple[Box, float]], bodies: list[tuple[Box, float]]) -> tuple[Person, ...]:
    """One person per face above ``FACE_THRESHOLD`` (with the body box holding it, if
    any), plus one per remaining body above ``BODY_ALONE_THRESHOLD``; left to right."""
    persons: list[Person] = []
    used: set[int] = set()
    for fbox, fscore in sorted(faces, key=lambda f: -f[1]):
        if fscore < FACE_THRESHOLD:
            continue
        match = next((i for i, (bbox, bscore) in enumerate(bodies)
                      if i not in used and bscore >= BODY_WITH_FACE_THRESHOLD and _inside(fbox, bbox)), None)
        if match is None:
            persons.append(Person(fbox, position_of(fbox), Evidence.FACE, fscore, None))
        else:
            used.add(match)
            bbox, bscore = bodies[match]
            persons.append(Person(bbox, position_of(bbox), Evidence.FACE_AND_BODY, fscore, bscore))
    for i, (bbox, bscore) in enumerate(bodies):
        if i not in used and bscore >= BODY_ALONE_THRESHOLD:
            persons.append(Person(bbox, position_of(bbox), Evidence.BODY, None, bscore))
    return tuple(sorted(persons, key=lambda p: p.box[0] + p.box[2]))


class PeopleFinder:
    """Holds the face detector's ONNX sessions and OpenCV's HOG detector between images."""

    def __init__(self, cache_dir: Path | None, *, threads: int, notify: Callable[[str], None] | None = None) -> None:
        from askgpt.vision.people.detector import load_face_detector

        self._faces = load_face_detector(cache_dir, threads=threads, notify=notify)
        self._hog = hog_detector()

    @property
    def body_detector(self) -> bool:
        return self._hog is not None

    def find(self, rgb: np.ndarray) -> People:
        """People in an (H, W, 3) uint8 RGB image."""
        start = time.perf_counter()
        height, width = rgb.shape[:2]
        faces = [((f.box[0] / width, f.box[1] / height, f.box[2] / width, f.box[3] / height), f.score)
                 for f in self._faces.detect(rgb)]
        bodies = detect_bodies(self._hog, rgb) if self._hog is not None else []
        persons = merge(faces, bodies)
        return People(persons, faces=sum(p.face_score is not None for p in persons),
                      body_detector=self._hog is not None, seconds=time.perf_counter() - start)


@lru_cache(maxsize=2)
def people_finder(cache_dir: Path | None = None, threads: int = 2) -> PeopleFinder:
    """A finder kept for the process: its graphs and sessions load once."""
    return PeopleFinder(cache_dir, threads=threads)


def find_people(rgb: np.ndarray, *, cache_dir: Path | None = None, threads: int = 2) -> People:
    """People in an (H, W, 3) uint8 RGB image. With ``cache_dir`` the face detector's
    graphs are built once and cached there; without, built in memory once per process."""
    return people_finder(cache_dir, threads).find(rgb)
