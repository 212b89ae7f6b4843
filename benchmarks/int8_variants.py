"""The int8 MobileNetV2 variants tried against the int8 <= 0.5x fp32 bar (issue 6).

    python benchmarks/int8_variants.py [--rounds 15]

Each variant is quantized from askgpt's fp32 ONNX graph with onnxruntime, calibrated
on the same photos as benchmarks/vision.py, and timed against fp32 on the labelled
photos, interleaved round by round, at 1 thread and at every core. Also: whether it
keeps fp32's top-1 on the 5 labelled photos.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from askgpt.vision.classifier import FP32_NODES, calibration_reader, ensure_onnx  # noqa: E402
from askgpt.vision.encoder import session_options  # noqa: E402
from askgpt.vision.images import load_image  # noqa: E402
from askgpt.vision.mobilenet import preprocess  # noqa: E402
from vision import CALIBRATION, LABELLED, sample  # noqa: E402


def main() -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    fp32 = ensure_onnx(work).onnx
    calibration = [preprocess(load_image(str(sample(n))).pixels) for n in CALIBRATION if sample(n).exists()]
    photos = [preprocess(load_image(str(sample(n))).pixels)[None] for n, _, _ in LABELLED]
    prepared = work / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared))

    keep = list(FP32_NODES)
    variants = {
        "QDQ, stem fp32": (fp32, {"quant_format": QuantFormat.QDQ, "nodes_to_exclude": keep}),
        "QOperator, stem fp32": (fp32, {"quant_format": QuantFormat.QOperator, "nodes_to_exclude": keep}),
        "QOperator U8U8, stem fp32": (fp32, {"quant_format": QuantFormat.QOperator, "nodes_to_exclude": keep,
                                             "weight_type": QuantType.QUInt8}),
        "pre-processed QDQ, stem fp32 (askgpt's)": (prepared, {"quant_format": QuantFormat.QDQ,
                                                               "nodes_to_exclude": keep}),
        "QDQ, all int8": (fp32, {"quant_format": QuantFormat.QDQ}),
    }
    paths = {"fp32": fp32}
    for label, (source, kwargs) in variants.items():
        out = work / f"{len(paths)}.onnx"
        kwargs = {"per_channel": True, "weight_type": QuantType.QInt8, "activation_type": QuantType.QUInt8, **kwargs}
        quantize_static(str(source), str(out), calibration_reader(calibration), **kwargs)
        paths[label] = out
    for threads in sorted({1, os.cpu_count() or 1}):
        sessions = {k: ort.InferenceSession(str(p), sess_options=session_options(threads),
                                            providers=["CPUExecutionProvider"]) for k, p in paths.items()}
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for s in sessions.values():
            for x in photos:
                s.run(None, {"pixel_values": x})
        for _ in range(args.rounds):
            for k, s in sessions.items():
                for x in photos:
                    start = time.perf_counter()
                    s.run(None, {"pixel_values": x})
                    times[k].append(time.perf_counter() - start)
        base = statistics.median(times["fp32"])
        top1 = {k: [int(np.argmax(s.run(None, {"pixel_values": x})[0])) for x in photos] for k, s in sessions.items()}
        print(f"## {threads} thread(s), median of {args.rounds} x {len(photos)}")
        for k in sessions:
            same = sum(a == b for a, b in zip(top1[k], top1["fp32"], strict=True))
            med = statistics.median(times[k])
            print(f"{k:42s} {med * 1000:6.2f} ms  {med / base:4.2f}x fp32  top-1 as fp32 {same}/{len(photos)}")


if __name__ == "__main__":
    main()
