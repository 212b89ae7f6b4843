"""Faces and people: MTCNN's networks built as ONNX without torch (checked against a
PyTorch reference written here from the same state dicts), the cascade on real
photos, the merge with OpenCV's HOG body boxes, and the phrase the image block uses."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from askgpt.vision.classifier import data_path
from askgpt.vision.people.detector import WEIGHTS, FaceDetector, build_in_memory, ensure_onnx
from askgpt.vision.people.finder import (
    BODY_ALONE_THRESHOLD,
    FACE_THRESHOLD,
    Evidence,
    People,
    PeopleFinder,
    Person,
    Position,
    hog_detector,
    merge,
)
from askgpt.vision.people.nets import Net, build_onnx, load_state, to_input
from askgpt.vision.torch_pickle import MAGIC, PROTOCOL, WeightsError


def sample(name: str) -> np.ndarray:
    import skimage

    return np.asarray(Image.open(Path(skimage.__file__).parent / "data" / name).convert("RGB"))


# --- the weights ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("net", list(Net))
def test_weights_read_without_torch_equal_torch_s_own_reading(net: Net) -> None:
    import torch

    path = data_path(WEIGHTS[net])
    ours = load_state(net, path)
    theirs = torch.load(path, weights_only=True)
    assert set(ours) == set(theirs)
    for name, tensor in theirs.items():
        assert np.array_equal(ours[name], tensor.numpy()), name


class _Exploit:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("touch {marker}",))


def test_a_planted_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(), protocol=2).replace(b"{marker}", str(marker).encode())
    header = pickle.dumps(MAGIC, protocol=2) + pickle.dumps(PROTOCOL, protocol=2)
    header += pickle.dumps({"protocol_version": PROTOCOL, "little_endian": True}, protocol=2)
    evil = tmp_path / "mtcnn_pnet.pt"
    evil.write_bytes(header + payload + pickle.dumps([], protocol=2))
    with pytest.raises(WeightsError, match="never needs"):
        load_state(Net.PNET, evil)
    assert not marker.exists()


def test_a_state_dict_of_another_network_is_refused() -> None:
    with pytest.raises(WeightsError, match="not MTCNN's pnet"):
        load_state(Net.PNET, data_path(WEIGHTS[Net.RNET]))
    with pytest.raises(WeightsError, match="not MTCNN's onet"):
        load_state(Net.ONET, data_path("mobilenet_v2-b0353104.pth"))


# --- ONNX against a PyTorch reference --------------------------------------------------------------------

def torch_reference(net: Net, state: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    """The published PyTorch port's layers, loaded from the same state dict: max-pools
    with ceil_mode, PReLU, and the port's flatten (H and W swapped first)."""
    import torch
    from torch import nn

    class Flatten(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.transpose(3, 2).contiguous().view(x.size(0), -1)

    def pool(k: int, s: int) -> nn.Module:
        return nn.MaxPool2d(k, s, ceil_mode=True)

    if net is Net.PNET:
        layers = [("conv1", nn.Conv2d(3, 10, 3)), ("prelu1", nn.PReLU(10)), ("pool1", pool(2, 2)),
                  ("conv2", nn.Conv2d(10, 16, 3)), ("prelu2", nn.PReLU(16)),
                  ("conv3", nn.Conv2d(16, 32, 3)), ("prelu3", nn.PReLU(32))]
        heads = {"conv4_1": nn.Conv2d(32, 2, 1), "conv4_2": nn.Conv2d(32, 4, 1)}
    elif net is Net.RNET:
        layers = [("conv1", nn.Conv2d(3, 28, 3)), ("prelu1", nn.PReLU(28)), ("pool1", pool(3, 2)),
                  ("conv2", nn.Conv2d(28, 48, 3)), ("prelu2", nn.PReLU(48)), ("pool2", pool(3, 2)),
                  ("conv3", nn.Conv2d(48, 64, 2)), ("prelu3", nn.PReLU(64)), ("flatten", Flatten()),
                  ("conv4", nn.Linear(576, 128)), ("prelu4", nn.PReLU(128))]
        heads = {"conv5_1": nn.Linear(128, 2), "conv5_2": nn.Linear(128, 4)}
    else:
        layers = [("conv1", nn.Conv2d(3, 32, 3)), ("prelu1", nn.PReLU(32)), ("pool1", pool(3, 2)),
                  ("conv2", nn.Conv2d(32, 64, 3)), ("prelu2", nn.PReLU(64)), ("pool2", pool(3, 2)),
                  ("conv3", nn.Conv2d(64, 64, 3)), ("prelu3", nn.PReLU(64)), ("pool3", pool(2, 2)),
                  ("conv4", nn.Conv2d(64, 128, 2)), ("prelu4", nn.PReLU(128)), ("flatten", Flatten()),
                  ("conv5", nn.Linear(1152, 256)), ("drop5", nn.Dropout(0.25)), ("prelu5", nn.PReLU(256))]
        heads = {"conv6_1": nn.Linear(256, 2), "conv6_2": nn.Linear(256, 4), "conv6_3": nn.Linear(256, 10)}
    model = nn.Module()
    model.features = nn.Sequential(OrderedDict(layers))
    for name, head in heads.items():
        setattr(model, name, head)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    model.eval()

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            h = model.features(torch.from_numpy(x))
            outs = [getattr(model, name)(h) for name in heads]
            outs[0] = torch.softmax(outs[0], dim=1)
            return [o.numpy() for o in outs]

    return run


def onnx_run(net: Net, state: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    session = ort.InferenceSession(build_onnx(net, state), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names[:2] == ["probs", "offsets"]
    return lambda x: session.run(names, {"image": x})


def astronaut_face_crop(size: int) -> np.ndarray:
    # Her face, by eye: x 175..270, y 55..175 of the 512 x 512 photo.
    return np.asarray(Image.fromarray(sample("astronaut.png")[50:180, 160:290]).resize((size, size)), np.float32)


@pytest.mark.parametrize("net", list(Net))
def test_onnx_graphs_match_the_pytorch_port(net: Net) -> None:
    state = load_state(net, data_path(WEIGHTS[net]))
    ours, theirs = onnx_run(net, state), torch_reference(net, state)
    rng = np.random.default_rng(0)
    if net is Net.PNET:
        # Odd sizes: the max-pool must round its output size up, as the port's does.
        inputs = [rng.integers(0, 256, (2, 37, 53, 3)), rng.integers(0, 256, (1, 12, 12, 3)),
                  np.asarray(Image.fromarray(sample("astronaut.png")).resize((217, 217)))]
    else:
        size = 24 if net is Net.RNET else 48
        inputs = [rng.integers(0, 256, (8, size, size, 3)), astronaut_face_crop(size),
                  np.asarray(Image.fromarray(sample("rocket.jpg")).resize((size, size)))]
    for rgb in inputs:
        x = to_input(rgb)
        for got, want in zip(ours(x), theirs(x), strict=True):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)
    if net is not Net.PNET:  # her face is a face to both, the rocket photo is not
        probs = ours(to_input(astronaut_face_crop(size)))[0][0, 1], ours(to_input(inputs[2]))[0][0, 1]
        assert probs[0] > 0.9 and probs[1] < 0.1  # measured: > 0.99 and < 0.03


def test_graphs_are_built_once_and_cached_by_the_weights(tmp_path: Path) -> None:
    notes: list[str] = []
    first = ensure_onnx(tmp_path, notify=notes.append)
    again = ensure_onnx(tmp_path, notify=notes.append)
    assert first == again and len(notes) == 1
    assert sorted(p.name.split("-")[1] for p in (tmp_path / "vision").iterdir()) == ["onet", "pnet", "rnet"]
    detector = FaceDetector(first.paths, threads=1)
    assert len(detector.detect(sample("astronaut.png"))) == 1


# --- the cascade and people on real photos ---------------------------------------------------------------

@pytest.fixture(scope="module")
def finder(tmp_path_factory: pytest.TempPathFactory) -> PeopleFinder:
    return PeopleFinder(tmp_path_factory.mktemp("cache"), threads=2)


def test_opencv_has_the_hog_people_detector() -> None:
    # OpenCV 5 dropped it from the main wheel; pyproject pins opencv-python below 5.
    assert hog_detector() is not None


def test_astronaut_is_one_person_with_one_face(finder: PeopleFinder) -> None:
    people = finder.find(sample("astronaut.png"))
    assert (people.count, people.faces, people.positions) == (1, 1, ("centre",))
    (person,) = people.persons
    assert person.face_score is not None and person.face_score >= FACE_THRESHOLD
    cx, cy = (person.box[0] + person.box[2]) / 2 * 512, (person.box[1] + person.box[3]) / 2 * 512
    assert 175 < cx < 270 and 55 < cy < 175  # on her face, not on the helmet HOG likes
    assert people.phrase() == "a person, at the centre"


def test_camera_man_is_one_person(finder: PeopleFinder) -> None:
    assert finder.find(sample("camera.png")).count == 1


@pytest.mark.parametrize("name", ["coffee.png", "chelsea.png", "motorcycle_left.png", "page.png", "logo.png"])
def test_photos_without_people_add_none(finder: PeopleFinder, name: str) -> None:
    people = finder.find(sample(name))
    assert people.count == 0 and people.phrase() is None


def test_two_people_side_by_side(finder: PeopleFinder) -> None:
    a = sample("astronaut.png")
    people = finder.find(np.concatenate([a, a[:, ::-1]], axis=1))
    assert people.positions == ("left", "right")
    assert people.phrase() == "two people, at the left and the right"


def test_without_hog_it_falls_back_to_faces(monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    monkeypatch.delattr(cv2, "HOGDescriptor")  # as in OpenCV 5's main wheel
    finder = PeopleFinder(None, threads=1)
    people = finder.find(sample("astronaut.png"))
    assert not people.body_detector and people.count == 1 and people.faces == 1


def test_graphs_built_in_memory_equal_the_cached_ones(tmp_path: Path) -> None:
    cached = ensure_onnx(tmp_path).paths
    assert {net: path.read_bytes() for net, path in cached.items()} == build_in_memory()


# --- merging and wording ---------------------------------------------------------------------------------

def _person(x0: float, x1: float, evidence: Evidence = Evidence.FACE) -> Person:
    box = (x0, 0.1, x1, 0.5)
    from askgpt.vision.people.finder import position_of

    return Person(box, position_of(box), evidence, 0.999 if evidence is not Evidence.BODY else None,
                  None if evidence is Evidence.FACE else 2.0)


@pytest.mark.parametrize(("boxes", "phrase"), [
    ([], None),
    ([(0.4, 0.6)], "a person, at the centre"),
    ([(0.05, 0.2), (0.4, 0.6)], "two people, at the left and the centre"),
    ([(0.4, 0.5), (0.5, 0.6)], "two people, at the centre"),
    ([(0.0, 0.1), (0.4, 0.6), (0.8, 0.9)], "three people, at the left, the centre and the right"),
    ([(0.7, 0.8)] * 12, "12 people, at the right"),
])
def test_phrase_wording(boxes: list[tuple[float, float]], phrase: str | None) -> None:
    people = People(tuple(_person(a, b) for a, b in boxes), faces=len(boxes), body_detector=True)
    assert people.phrase() == phrase


def test_a_face_inside_a_body_is_one_person() -> None:
    face = ((0.45, 0.1, 0.55, 0.2), 0.999)
    body = ((0.35, 0.05, 0.65, 0.95), 0.5)  # too weak alone, enough to hold a face
    elsewhere = ((0.0, 0.1, 0.2, 0.9), BODY_ALONE_THRESHOLD + 0.1)
    weak = ((0.8, 0.1, 0.95, 0.9), BODY_ALONE_THRESHOLD - 0.1)
    persons = merge([face], [body, elsewhere, weak])
    assert [(p.position, p.evidence) for p in persons] == [
        (Position.LEFT, Evidence.BODY), (Position.CENTRE, Evidence.FACE_AND_BODY)]
    assert persons[1].box == body[0] and persons[1].face_score == 0.999


def test_weak_faces_are_not_people() -> None:
    assert merge([((0.4, 0.4, 0.5, 0.5), FACE_THRESHOLD - 0.01)], []) == ()


def test_images_smaller_than_the_body_window_are_skipped_not_a_crash() -> None:
    # OpenCV 4's HOG detectMultiScale kills the process (SIGSEGV) on an image smaller than
    # its 64x128 window (measured: a 300x93 rendered line of text).
    from askgpt.vision.people.finder import detect_bodies, hog_detector

    hog = hog_detector()
    assert hog is not None
    rng = np.random.default_rng(0)
    for height, width in ((93, 300), (127, 64), (128, 63), (40, 40)):
        assert detect_bodies(hog, rng.integers(0, 255, (height, width, 3), dtype=np.uint8)) == []
    assert isinstance(detect_bodies(hog, rng.integers(0, 255, (200, 130, 3), dtype=np.uint8)), list)
