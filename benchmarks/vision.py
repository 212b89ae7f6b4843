"""The built-in image path, measured: encoder latency, accuracy, OCR, answers, time to first token.

    python benchmarks/vision.py [--runs 20]

Needs the test extra (torch, torchvision, scikit-image): pip install ".[test]".
In one process, on scikit-image's bundled photos and images rendered here:
1. classifier latency per image: torchvision eager vs ONNX fp32 vs ONNX int8
   (static quantization, calibrated on other photos than the labelled ones);
   OCR latency;
2. classifier top-1/top-5 on the labelled photos, fp32 and int8;
3. OCR character error rate on rendered receipts, dialogs, pages (with and
   without spaces) and the built-in model's answers to questions about them;
4. the built-in model's answer to "What is in this picture?" with the image
   as a text block, as embedding rows, or both (the default is the best);
5. time to first token with and without an image, as whole CLI processes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from rendered_images import all_cases, char_error_rate  # noqa: E402

from askgpt.vision.classifier import (  # noqa: E402
    WEIGHTS_FILE,
    class_names,
    data_path,
    ensure_onnx,
    quantize_int8,
)
from askgpt.vision.encoder import session_options  # noqa: E402
from askgpt.vision.images import load_image  # noqa: E402
from askgpt.vision.mobilenet import preprocess  # noqa: E402

LABELLED = [  # photo, acceptable ImageNet classes, words a right answer contains
    ("chelsea.png", {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}, r"cat"),
    ("coffee.png", {"espresso", "cup", "coffee mug"}, r"coffee|espresso|cup|mug"),
    ("rocket.jpg", {"space shuttle", "missile", "projectile"}, r"rocket|shuttle|missile|launch"),
    ("motorcycle_left.png", {"moped", "motor scooter", "crash helmet", "disk brake"}, r"motorcycle|moped|scooter"),
    ("astronaut.png", {"space suit"}, r"astronaut|space ?suit"),  # ImageNet has no astronaut class
]
CALIBRATION = ["horse.png", "camera.png", "coins.png", "page.png", "hubble_deep_field.jpg", "retina.jpg",
               "brick.png", "grass.png", "gravel.png", "color.png", "logo.png", "immunohistochemistry.png"]


def sample(name: str) -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / name


def median_ms(runners: dict[str, Callable[[np.ndarray], np.ndarray]], inputs: list[np.ndarray],
              runs: int) -> dict[str, float]:
    """Median per-image latency of each runner, interleaved round by round so that a
    slow spell on this noisy machine hits every runner alike."""
    times: dict[str, list[float]] = {label: [] for label in runners}
    for fn in runners.values():
        for x in inputs:
            fn(x)
    for _ in range(runs):
        for label, fn in runners.items():
            for x in inputs:
                start = time.perf_counter()
                fn(x)
                times[label].append(time.perf_counter() - start)
    return {label: statistics.median(t) * 1000 for label, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    import onnxruntime as ort

    threads = os.cpu_count() or 1
    cache = Path(tempfile.mkdtemp())
    fp32 = ensure_onnx(cache).onnx
    calibration = [preprocess(load_image(str(sample(n))).pixels) for n in CALIBRATION if sample(n).exists()]
    int8 = cache / "int8.onnx"
    quantize_int8(fp32, int8, calibration)
    photos = [preprocess(load_image(str(sample(n))).pixels)[None] for n, _, _ in LABELLED]
    names = class_names()

    top: dict[str, list[list[str]]] = {}
    eager_model = None
    try:
        import torch
        import torchvision

        eager_model = torchvision.models.mobilenet_v2()
        eager_model.load_state_dict(torch.load(data_path(WEIGHTS_FILE), weights_only=True))
        eager_model.eval()
    except ImportError:
        print("(torch not installed: no eager baseline)")
    for n_threads in sorted({1, threads}):
        print(f"## 1. Classifier latency per image ({n_threads} thread(s), median of {args.runs} x "
              f"{len(photos)}, interleaved)")
        runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        if eager_model is not None:
            import torch

            torch.set_num_threads(n_threads)

            def eager(x: np.ndarray, m=eager_model) -> np.ndarray:  # type: ignore[no-untyped-def]
                with torch.no_grad():
                    return m(torch.from_numpy(x)).numpy()

            runners["torchvision eager"] = eager
        for label, path in (("onnx fp32", fp32), ("onnx int8", int8)):
            session = ort.InferenceSession(str(path), sess_options=session_options(n_threads),
                                           providers=["CPUExecutionProvider"])

            def run(x: np.ndarray, s=session) -> np.ndarray:  # type: ignore[no-untyped-def]
                return s.run(["logits"], {"pixel_values": x})[0]

            runners[label] = run
        times = median_ms(runners, photos, args.runs)
        for label, fn in runners.items():
            top[label] = [[names[i] for i in np.argsort(-fn(x)[0])[:5]] for x in photos]
        for label, ms in times.items():
            print(f"{label:18s} {ms:7.2f} ms")
        if "torchvision eager" in times:
            print(f"fp32 / eager = {times['onnx fp32'] / times['torchvision eager']:.2f} (bar <= 0.75)")
        print(f"int8 / fp32  = {times['onnx int8'] / times['onnx fp32']:.2f} (bar <= 0.5)")

    print("\n## 2. Classifier accuracy on the labelled photos")
    for label, tops in top.items():
        hit1 = sum(t[0] in want for t, (_, want, _) in zip(tops, LABELLED, strict=True))
        hit5 = sum(bool(set(t) & want) for t, (_, want, _) in zip(tops, LABELLED, strict=True))
        print(f"{label:18s} top-1 {hit1}/{len(LABELLED)}  top-5 {hit5}/{len(LABELLED)}  "
              f"top-1 labels: {[t[0] for t in tops]}")
    same = [a[0] == b[0] for a, b in zip(top["onnx fp32"], top["onnx int8"], strict=True)]
    print(f"int8 keeps fp32's top-1 on {sum(same)}/{len(same)} photos")

    askgpt = shutil.which("askgpt", path=str(Path(sys.executable).parent)) or "askgpt"
    work = Path(tempfile.mkdtemp())
    env = {**os.environ, "ASKGPT_HOME": str(cache / "home")}

    def ask(question: str, image: Path | None, *extra: str) -> tuple[str, str]:
        cmd = [askgpt, "-t", "0", "-n", "64", "--stats", *extra, question] + (["-i", str(image)] if image else [])
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        return done.stdout, done.stderr

    print("\n## 3. OCR on rendered images")
    from askgpt.vision.images import LoadedImage
    from askgpt.vision.ocr import OcrReader

    reader = OcrReader(threads=threads)
    right = 0
    for case in all_cases():
        pixels = np.asarray(case.image.convert("RGB"))
        start = time.perf_counter()
        found = reader.encode(LoadedImage(case.name, pixels, "PNG", ""))
        seconds = time.perf_counter() - start
        ref, hyp = "\n".join(case.lines), "\n".join(found.text_lines)
        path = work / "image.png"
        case.image.save(path)
        answer, _ = ask(case.question, path)
        ok = bool(re.search(case.answer, answer))
        right += ok
        print(f"{case.name:13s} CER {char_error_rate(ref, hyp):.3f} (spaces ignored) "
              f"{_cer_with_spaces(ref, hyp):.3f} (with spaces)  {seconds * 1000:5.0f} ms  "
              f"answer {'right' if ok else 'wrong'}: {answer.strip()[:70]!r}")
    print(f"answers right: {right}/{len(all_cases())}")

    print("\n## 4. What is in this picture? (built-in model, greedy)")
    for mode in ("text", "embed", "both"):
        hits = []
        for name, _, words in LABELLED:
            path = work / f"photo{Path(name).suffix}"  # a neutral name: the answer must come from the pixels
            shutil.copy(sample(name), path)
            answer, _ = ask("What is in this picture?", path, "--image-mode", mode)
            # Whole words (and their plurals): a bare substring would count "cat" in "indicates".
            hits.append(bool(re.search(rf"\b(?:{words})(?:e?s)?\b", answer, re.I)))
        print(f"--image-mode {mode:5s}: {sum(hits)}/{len(hits)} right  {hits}")

    print("\n## 5. Time to first token, whole process: start to the first byte of the answer (median of 5)")
    photo = work / "photo.png"
    shutil.copy(sample("chelsea.png"), photo)
    for label, extra in (("without image", []), ("with image", ["-i", str(photo)]),
                         ("image, --ocr off", ["-i", str(photo), "--ocr", "off"])):
        firsts = []
        for _ in range(5):
            start = time.perf_counter()
            proc = subprocess.Popen([askgpt, "-t", "0", "-n", "8", "Describe this.", *extra],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
            assert proc.stdout is not None
            proc.stdout.read(1)
            firsts.append(time.perf_counter() - start)
            proc.communicate(timeout=300)
        print(f"{label:17s} {statistics.median(firsts):.2f} s")


def _cer_with_spaces(ref: str, hyp: str) -> float:
    return char_error_rate(ref.replace(" ", "\x00"), hyp.replace(" ", "\x00"))


if __name__ == "__main__":
    main()
