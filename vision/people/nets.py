"""MTCNN's P-Net, R-Net and O-Net as ONNX graphs, built with the onnx helpers from
their PyTorch state dicts (read by `torch_pickle`, which refuses anything but tensors).

The state dicts use the layout of the PyTorch port of the original Caffe models
(``features.conv1``, ``features.prelu1``, ..., heads ``conv4_1``/``conv5_1``/``conv6_1``):

- P-Net (fully convolutional, any size >= 12): conv 3x3 -> 10, PReLU, max-pool 2/2,
  conv 3x3 -> 16, PReLU, conv 3x3 -> 32, PReLU; 1x1 heads: face softmax (2) and box
  offsets (4). One output cell per 12x12 window, stride 2.
- R-Net (24x24): conv 3x3 -> 28, PReLU, max-pool 3/2, conv 3x3 -> 48, PReLU,
  max-pool 3/2, conv 2x2 -> 64, PReLU, flatten, linear 576 -> 128, PReLU; heads
  softmax (2) and offsets (4).
- O-Net (48x48): conv 3x3 -> 32, PReLU, max-pool 3/2, conv 3x3 -> 64, PReLU,
  max-pool 3/2, conv 3x3 -> 64, PReLU, max-pool 2/2, conv 2x2 -> 128, PReLU, flatten,
  linear 1152 -> 256, PReLU; heads softmax (2), offsets (4), landmarks (10).

Every max-pool rounds its output size up (Caffe's rule, PyTorch ``ceil_mode=True``).
The port flattens (N, C, H, W) after swapping H and W (the Caffe weights came from
column-major MATLAB), so the first linear layer's columns are reordered here to the
plain (C, H, W) order and the graph needs no Transpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from askgpt.vision.torch_pickle import WeightsError, load_legacy_state_dict

OPSET = 17
MEAN = 127.5  # the networks' input is (rgb - 127.5) / 128
SCALE = 0.0078125


class Net(Enum):
    PNET = "pnet"
    RNET = "rnet"
    ONET = "onet"


@dataclass(frozen=True)
class NetSpec:
    """What one network looks like: its trunk's convolutions (with the max-pool after
    each, if any, as (kernel, stride)), its linear layer, heads, and fixed input size."""

    convs: tuple[tuple[str, tuple[int, int] | None], ...]
    linear: str | None
    heads: tuple[tuple[str, str], ...]  # (state dict prefix, output name)
    input_size: int | None  # None: any size (P-Net)
    shapes: dict[str, tuple[int, ...]]


def _conv_shapes(layers: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for prefix, weight in layers.items():
        shapes[f"{prefix}.weight"] = weight
        shapes[f"{prefix}.bias"] = (weight[0],)
    return shapes


def _prelu_shapes(trunk: dict[str, int]) -> dict[str, tuple[int, ...]]:
    return {f"features.{name}.weight": (n,) for name, n in trunk.items()}


SPECS: dict[Net, NetSpec] = {
    Net.PNET: NetSpec(
        convs=(("conv1", (2, 2)), ("conv2", None), ("conv3", None)),
        linear=None,
        heads=(("conv4_1", "probs"), ("conv4_2", "offsets")),
        input_size=None,
        shapes={**_conv_shapes({"features.conv1": (10, 3, 3, 3), "features.conv2": (16, 10, 3, 3),
                                "features.conv3": (32, 16, 3, 3), "conv4_1": (2, 32, 1, 1),
                                "conv4_2": (4, 32, 1, 1)}),
                **_prelu_shapes({"prelu1": 10, "prelu2": 16, "prelu3": 32})},
    ),
    Net.RNET: NetSpec(
        convs=(("conv1", (3, 2)), ("conv2", (3, 2)), ("conv3", None)),
        linear="conv4",
        heads=(("conv5_1", "probs"), ("conv5_2", "offsets")),
        input_size=24,
        shapes={**_conv_shapes({"features.conv1": (28, 3, 3, 3), "features.conv2": (48, 28, 3, 3),
                                "features.conv3": (64, 48, 2, 2), "features.conv4": (128, 576),
                                "conv5_1": (2, 128), "conv5_2": (4, 128)}),
                **_prelu_shapes({"prelu1": 28, "prelu2": 48, "prelu3": 64, "prelu4": 128})},
    ),
    Net.ONET: NetSpec(
        convs=(("conv1", (3, 2)), ("conv2", (3, 2)), ("conv3", (2, 2)), ("conv4", None)),
        linear="conv5",
        heads=(("conv6_1", "probs"), ("conv6_2", "offsets"), ("conv6_3", "landmarks")),
        input_size=48,
        shapes={**_conv_shapes({"features.conv1": (32, 3, 3, 3), "features.conv2": (64, 32, 3, 3),
                                "features.conv3": (64, 64, 3, 3), "features.conv4": (128, 64, 2, 2),
                                "features.conv5": (256, 1152), "conv6_1": (2, 256), "conv6_2": (4, 256),
                                "conv6_3": (10, 256)}),
                **_prelu_shapes({"prelu1": 32, "prelu2": 64, "prelu3": 64, "prelu4": 128, "prelu5": 256})},
    ),
}


def load_state(net: Net, path: Path) -> dict[str, np.ndarray]:
    """The network's tensors, read without running code from the file, and checked
    name by name and shape by shape against what the graph builder expects."""
    state = load_legacy_state_dict(path)
    expected = SPECS[net].shapes
    if set(state) != set(expected):
        missing = sorted(set(expected) - set(state))[:3]
        extra = sorted(set(state) - set(expected))[:3]
        raise WeightsError(f"{path} is not MTCNN's {net.value} state dict (missing {missing}, unexpected {extra})")
    for name, shape in expected.items():
        if state[name].shape != shape or state[name].dtype != np.float32:
            raise WeightsError(f"{path}: {name} has shape {state[name].shape} {state[name].dtype}, "
                               f"expected {shape} float32")
    return state


def linear_in_chw_order(weight: np.ndarray, channels: int) -> np.ndarray:
    """The port's linear weight (out, C*W*H: flattened after swapping H and W) with its
    columns reordered to (C, H, W), the order a plain Flatten of NCHW produces."""
    out, n = weight.shape
    side = int(round((n // channels) ** 0.5))
    if channels * side * side != n:
        raise WeightsError(f"a linear layer of width {n} does not follow a square map of {channels} channels")
    return weight.reshape(out, channels, side, side).transpose(0, 1, 3, 2).reshape(out, n)


class _Builder:
    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper = helper
        self._numpy_helper = numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self._numpy_helper.from_array(np.ascontiguousarray(value, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def build_onnx(net: Net, state: dict[str, np.ndarray]) -> bytes:
    """The serialised ONNX model: input ``image`` (N, 3, H, W), already scaled to
    (rgb - 127.5) / 128; outputs ``probs`` (face / not-face softmax on axis 1, channel
    1 the face), ``offsets`` (box regression) and, for O-Net, ``landmarks``. P-Net's
    outputs are maps (N, C, h, w); R-Net's and O-Net's are (N, C)."""
    import onnx
    from onnx import TensorProto, helper

    spec = SPECS[net]
    b = _Builder()
    x = "image"
    for conv, pool in spec.convs:
        w = state[f"features.{conv}.weight"]
        x = b.node("Conv", [x, b.const(f"{conv}.w", w), b.const(f"{conv}.b", state[f"features.{conv}.bias"])],
                   f"{conv}", kernel_shape=list(w.shape[2:]), strides=[1, 1])
        prelu = conv.replace("conv", "prelu")
        slope = state[f"features.{prelu}.weight"].reshape(-1, 1, 1)  # per channel, broadcast over H and W
        x = b.node("PRelu", [x, b.const(f"{prelu}.slope", slope)], prelu)
        if pool is not None:
            k, s = pool
            x = b.node("MaxPool", [x], f"pool{conv[-1]}", kernel_shape=[k, k], strides=[s, s], ceil_mode=1)
    if spec.linear is not None:
        x = b.node("Flatten", [x], "flatten", axis=1)
        w = state[f"features.{spec.linear}.weight"]
        channels = state[f"features.{spec.convs[-1][0]}.weight"].shape[0]
        x = b.node("Gemm", [x, b.const(f"{spec.linear}.w", linear_in_chw_order(w, channels)),
                            b.const(f"{spec.linear}.b", state[f"features.{spec.linear}.bias"])],
                   spec.linear, transB=1)
        prelu = f"prelu{spec.linear[-1]}"
        x = b.node("PRelu", [x, b.const(f"{prelu}.slope", state[f"features.{prelu}.weight"])], prelu)
    outputs = []
    for head, out in spec.heads:
        w, bias = state[f"{head}.weight"], state[f"{head}.bias"]
        if spec.linear is None:
            y = b.node("Conv", [x, b.const(f"{head}.w", w), b.const(f"{head}.b", bias)],
                       out if out != "probs" else f"{head}", kernel_shape=[1, 1])
        else:
            y = b.node("Gemm", [x, b.const(f"{head}.w", w), b.const(f"{head}.b", bias)],
                       out if out != "probs" else f"{head}", transB=1)
        if out == "probs":
            b.node("Softmax", [y], out, axis=1)
        dims: list[int | str] = ["batch", w.shape[0]] + ([] if spec.linear else ["h", "w"])
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, dims))
    side: list[int | str] = [spec.input_size, spec.input_size] if spec.input_size else ["height", "width"]
    graph = helper.make_graph(
        b.nodes, f"mtcnn_{net.value}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, *side])],
        outputs, b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="askgpt")
    model.ir_version = 8  # readable by every onnxruntime askgpt supports
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def to_input(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) or (N, H, W, 3) RGB in 0..255 -> the networks' (N, 3, H, W) float input."""
    x = np.asarray(rgb, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    return ((x - MEAN) * SCALE).transpose(0, 3, 1, 2).copy()
