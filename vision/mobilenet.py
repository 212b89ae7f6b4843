"""MobileNetV2 (torchvision's ImageNet weights) as an ONNX graph built here, without torch.

The graph is written with the ``onnx`` package's helpers from the state dict
read by `torch_pickle`, with every batch norm folded into the convolution
before it (inference needs only the folded weights). Its outputs are the
1000 class logits and the 1280-d pooled feature the classifier reads, which
the projector maps into the language model's embedding space.

Layout (torchvision names): ``features.0`` conv 3x3/2 -> 32 + BN + ReLU6;
``features.1..17`` inverted residual blocks (1x1 expand + BN + ReLU6, 3x3
depthwise + BN + ReLU6, 1x1 project + BN, plus the input where stride is 1
and the widths match); ``features.18`` conv 1x1 -> 1280 + BN + ReLU6; global
average pool; ``classifier.1`` linear 1280 -> 1000.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BN_EPS = 1e-5
STRIDE_TWO_BLOCKS = frozenset({2, 4, 7, 14})  # where a block halves the resolution
IMAGE_SIZE = 224
RESIZE = 256
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
N_BLOCKS = 17
OPSET = 17


def fold_batch_norm(weight: np.ndarray, bn: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A conv (out, in, k, k) followed by batch norm, as one conv with a bias."""
    scale = bn["weight"] / np.sqrt(bn["running_var"] + BN_EPS)
    folded = weight * scale[:, None, None, None]
    bias = bn["bias"] - bn["running_mean"] * scale
    return folded.astype(np.float32), bias.astype(np.float32)


class _GraphBuilder:
    def __init__(self, state: dict[str, np.ndarray]) -> None:
        from onnx import helper, numpy_helper

        self._helper = helper
        self._numpy_helper = numpy_helper
        self.state = state
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._n = 0

    def _name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, stem: str, value: np.ndarray) -> str:
        name = self._name(stem)
        self.initializers.append(self._numpy_helper.from_array(value, name))
        return name

    def _bn(self, prefix: str) -> dict[str, np.ndarray]:
        return {k: self.state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}

    def conv_bn(self, x: str, conv: str, bn: str, *, stride: int = 1, relu6: bool = True) -> str:
        weight = self.state[f"{conv}.weight"]
        w, b = fold_batch_norm(weight, self._bn(bn))
        out_ch, in_per_group, k, _ = w.shape
        groups = out_ch if in_per_group == 1 and k == 3 else 1  # depthwise: one input channel per filter
        y = self._name("conv")
        self.nodes.append(self._helper.make_node(
            "Conv", [x, self.const("w", w), self.const("b", b)], [y], name=f"{conv}.conv",
            kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4, group=groups))
        if not relu6:
            return y
        z = self._name("relu6")
        self.nodes.append(self._helper.make_node(
            "Clip", [y, self.const("min", np.array(0.0, np.float32)), self.const("max", np.array(6.0, np.float32))],
            [z], name=f"{conv}.relu6"))
        return z

    def block(self, x: str, index: int) -> str:
        prefix = f"features.{index}.conv"
        stride = 2 if index in STRIDE_TWO_BLOCKS else 1
        if index == 1:  # no expansion layer
            h = self.conv_bn(x, f"{prefix}.0.0", f"{prefix}.0.1", stride=stride)
            y = self.conv_bn(h, f"{prefix}.1", f"{prefix}.2", relu6=False)
            in_ch, out_ch = self.state[f"{prefix}.0.0.weight"].shape[0], self.state[f"{prefix}.1.weight"].shape[0]
        else:
            h = self.conv_bn(x, f"{prefix}.0.0", f"{prefix}.0.1")
            h = self.conv_bn(h, f"{prefix}.1.0", f"{prefix}.1.1", stride=stride)
            y = self.conv_bn(h, f"{prefix}.2", f"{prefix}.3", relu6=False)
            in_ch, out_ch = self.state[f"{prefix}.0.0.weight"].shape[1], self.state[f"{prefix}.2.weight"].shape[0]
        if stride == 1 and in_ch == out_ch:
            z = self._name("residual")
            self.nodes.append(self._helper.make_node("Add", [x, y], [z], name=f"features.{index}.add"))
            return z
        return y


def build_onnx(state: dict[str, np.ndarray]) -> bytes:
    """The serialised ONNX model: input ``pixel_values`` (N, 3, 224, 224), outputs
    ``logits`` (N, 1000) and ``features`` (N, 1280). Nodes are named after the
    torchvision layers they come from (``features.18.0.conv``, ``classifier``), so
    a quantizer can be told which to leave in fp32."""
    import onnx
    from onnx import TensorProto, helper

    g = _GraphBuilder(state)
    x = g.conv_bn("pixel_values", "features.0.0", "features.0.1", stride=2)
    for index in range(1, N_BLOCKS + 1):
        x = g.block(x, index)
    x = g.conv_bn(x, "features.18.0", "features.18.1")
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    g.nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], axis=1, name="flatten"))
    g.nodes.append(helper.make_node(
        "Gemm", ["features", g.const("fc_w", state["classifier.1.weight"].astype(np.float32)),
                 g.const("fc_b", state["classifier.1.bias"].astype(np.float32))], ["logits"], transB=1,
        name="classifier"))
    n_classes, n_features = state["classifier.1.weight"].shape
    graph = helper.make_graph(
        g.nodes, "mobilenet_v2",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_classes]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n_features])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="askgpt")
    model.ir_version = 8  # readable by every onnxruntime askgpt supports
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def preprocess(pixels: np.ndarray) -> np.ndarray:
    """torchvision's reference transform for these weights, in Pillow + numpy:
    resize the short side to 256 (bilinear, antialiased), centre-crop 224,
    scale to [0, 1], normalise with ImageNet mean/std. (H, W, 3) uint8 -> (3, 224, 224)."""
    from PIL import Image

    h, w = pixels.shape[:2]
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = RESIZE, int(RESIZE * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    resized = Image.fromarray(pixels).resize((new_w, new_h), Image.Resampling.BILINEAR)
    top = int(round((new_h - IMAGE_SIZE) / 2.0))
    left = int(round((new_w - IMAGE_SIZE) / 2.0))
    crop = np.asarray(resized, dtype=np.float32)[top:top + IMAGE_SIZE, left:left + IMAGE_SIZE] / 255.0
    return ((crop - MEAN) / STD).transpose(2, 0, 1).astype(np.float32)
