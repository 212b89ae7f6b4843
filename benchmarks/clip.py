"""A CLIP image tower on ONNX Runtime, measured.

    python benchmarks/clip.py [--model ViT-B-32] [--runs 15] [--encoder NAME]

Needs the test extra and open_clip: pip install ".[test,clip]". No CLIP weights can be
downloaded on the machine this was written on, so the tower is open_clip's MODEL with
random weights (seeded), saved as a checkpoint and set up from it by `askgpt vision
setup --checkpoint` (the same path as a user's own weights). In one run:
1. setup time;
2. image-tower latency per image on scikit-image's photos: PyTorch eager vs ONNX fp32
   vs ONNX int8 (the same weights, the same preprocessed pixels), interleaved, and the
   int8 tower's cosine to fp32 on those photos;
3. time to first token of `askgpt "describe this" -i photo` with that CLIP encoder
   (int8) vs the built-in one, as whole processes on the built-in model;
4. the built-in model's answers with the image as a text block, as embedding rows,
   or both, with --encoder NAME (an encoder set up with real weights in the user's own
   askgpt home); with random weights this part is skipped: it would measure noise.
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
from pathlib import Path

import numpy as np

from askgpt.convert.clip import ClipSetupConfig, setup_clip
from askgpt.vision.clip import preprocess
from askgpt.vision.encoder import session_options
from askgpt.vision.images import load_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vision import LABELLED, median_ms, sample  # noqa: E402  (benchmarks/vision.py)


def _first_byte_seconds(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    proc.stdout.read(1)
    elapsed = time.perf_counter() - start
    proc.communicate(timeout=300)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--encoder", help="a CLIP encoder set up with real weights, for part 4")
    args = parser.parse_args()
    import onnxruntime as ort
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp())
    home = work / "home"
    try:
        torch.manual_seed(0)
        model = open_clip.create_model(args.model, pretrained=None, pretrained_text=False).eval()
        checkpoint = work / "weights.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
        print(f"## 1. Setup: {args.model}, random weights (seed 0), from a checkpoint")
        report = setup_clip(ClipSetupConfig(args.model, checkpoint=checkpoint, threads=args.threads),
                            home / "data")
        meta = report.meta
        sizes = ", ".join(f"{name} {entry['bytes'] / 1e6:.0f} MB" for name, entry in meta.files.items())
        print(f"setup {report.seconds:.1f} s; {sizes}")
        print("parity: " + ", ".join(f"{k} {v:.2e}" for k, v in meta.parity.items()))

        print(f"\n## 2. Image tower latency per image, {args.threads} thread(s), median of {args.runs} rounds "
              "x 5 photos, interleaved")
        photos = [load_image(str(sample(p))) for p, _, _ in LABELLED]
        inputs = [preprocess(im.pixels, meta.preprocess) for im in photos]
        visual = model.visual
        visual.output_tokens = True
        sessions = {kind: ort.InferenceSession(str(report.folder / f"visual{suffix}.onnx"),
                                               sess_options=session_options(args.threads),
                                               providers=["CPUExecutionProvider"])
                    for kind, suffix in (("fp32", ""), ("int8", ".int8"))}

        def eager(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return visual(torch.from_numpy(x))[0].numpy()

        runners = {"pytorch eager": eager,
                   **{f"onnx {k}": (lambda x, s=s: s.run(["pooled"], {"pixel_values": x})[0])
                      for k, s in sessions.items()}}
        ms = median_ms(runners, inputs, args.runs)
        base = ms["pytorch eager"]
        for label, value in ms.items():
            print(f"{label:14s} {value:7.1f} ms  {value / base:.2f}x PyTorch")
        cosines = []
        for x in inputs:
            a = sessions["fp32"].run(["pooled"], {"pixel_values": x})[0][0]
            b = sessions["int8"].run(["pooled"], {"pixel_values": x})[0][0]
            cosines.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
        print(f"int8 vs fp32 pooled cosine on the photos: min {min(cosines):.4f}, "
              f"mean {statistics.mean(cosines):.4f}")

        print("\n## 3. Time to first token of `askgpt \"describe this\" -i photo`, whole process, median of 5")
        askgpt = str(Path(sys.executable).parent / "askgpt")
        env = {**os.environ, "ASKGPT_HOME": str(home)}
        photo = work / "photo.png"
        shutil.copy(sample("chelsea.png"), photo)
        firsts: dict[str, list[float]] = {"builtin encoder": [], f"{args.model} int8": []}
        for _ in range(5):
            for label, encoder in (("builtin encoder", "builtin"), (f"{args.model} int8", meta.name)):
                firsts[label].append(_first_byte_seconds(
                    [askgpt, "-t", "0", "-n", "8", "describe this", "-i", str(photo), "--encoder", encoder,
                     "--no-log", "--no-cache"], env))
        for label, values in firsts.items():
            print(f"{label:18s} {statistics.median(values):.2f} s")

        print("\n## 4. Answers to \"What is in this picture?\" by --image-mode")
        if args.encoder is None:
            print("skipped: random weights would measure noise (run with --encoder NAME, an encoder set up "
                  "with real weights)")
            return
        for mode in ("text", "embed", "both"):
            hits = []
            for name, _, words in LABELLED:
                done = subprocess.run([askgpt, "-t", "0", "-n", "48", "What is in this picture?", "-i",
                                       str(sample(name)), "--encoder", args.encoder, "--image-mode", mode,
                                       "--no-log"], capture_output=True, text=True, timeout=300)
                hits.append(bool(re.search(words, done.stdout, re.I)))
            print(f"--image-mode {mode:5s}: {sum(hits)}/{len(hits)} right  {hits}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
