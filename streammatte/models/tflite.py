"""TFLite flatbuffer → ONNX, for the operators MediaPipe's selfie segmentation models use.

MediaPipe ships its selfie segmenter only as a ``.tflite`` file. Converting it once, at pull
time, lets it run on ONNX Runtime and TensorRT like every other catalog model, with the same
NCHW float32 layout (the converter moves TFLite's NHWC to NCHW at the edges of the graph, so the
inside of the graph is plain NCHW Conv/Resize that every ONNX backend runs well).

The flatbuffer is read with a small reader written against TFLite's ``schema.fbs`` (only the
tables used here), so the converter needs ``onnx`` and nothing else. Output is deterministic:
the same ``.tflite`` always gives byte-identical ``.onnx``, which is what lets the catalog pin
the converted file's sha256.

Supported: CONV_2D, DEPTHWISE_CONV_2D, ADD, MUL, HARD_SWISH, RELU, AVERAGE_POOL_2D, MEAN,
LOGISTIC, RESIZE_BILINEAR, DEQUANTIZE (fp16 constants, folded) and MediaPipe's custom
``Convolution2DTransposeBias``. Anything else raises ModelError naming the operator.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineUnavailableError, ModelError

#: bump when the converter's output changes: catalog sha256s of converted models depend on it
CONVERTER_VERSION = "1"
OPSET = 17
IR_VERSION = 8

# BuiltinOperator codes from TFLite's schema.fbs
_BUILTIN = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 6: "DEQUANTIZE",
    14: "LOGISTIC", 18: "MUL", 19: "RELU", 23: "RESIZE_BILINEAR", 32: "CUSTOM", 40: "MEAN",
    117: "HARD_SWISH",
}
# TensorType → numpy dtype
_DTYPES: dict[int, Any] = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64}
_ACTIVATIONS = {0: None, 1: "Relu", 3: "Relu6"}


# -- a minimal flatbuffer reader ---------------------------------------------------------------

class _Table:
    """One flatbuffer table: fields are read by their schema index."""

    __slots__ = ("buf", "pos", "vsize", "vtable")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vsize = struct.unpack_from("<H", buf, self.vtable)[0]

    def _offset(self, field: int) -> int:
        slot = 4 + 2 * field
        if slot >= self.vsize:
            return 0
        off: int = struct.unpack_from("<H", self.buf, self.vtable + slot)[0]
        return off

    def has(self, field: int) -> bool:
        return self._offset(field) != 0

    def scalar(self, field: int, fmt: str, default: Any = 0) -> Any:
        off = self._offset(field)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0] if off else default

    def _indirect(self, field: int) -> int | None:
        off = self._offset(field)
        if not off:
            return None
        at = self.pos + off
        target: int = at + struct.unpack_from("<I", self.buf, at)[0]
        return target

    def table(self, field: int) -> _Table | None:
        at = self._indirect(field)
        return None if at is None else _Table(self.buf, at)

    def string(self, field: int) -> str | None:
        at = self._indirect(field)
        if at is None:
            return None
        n = struct.unpack_from("<I", self.buf, at)[0]
        return self.buf[at + 4:at + 4 + n].decode("utf-8", "replace")

    def vector(self, field: int, fmt: str) -> list[Any]:
        at = self._indirect(field)
        if at is None:
            return []
        n = struct.unpack_from("<I", self.buf, at)[0]
        return list(struct.unpack_from(f"<{n}{fmt}", self.buf, at + 4))

    def bytes(self, field: int) -> bytes:
        at = self._indirect(field)
        if at is None:
            return b""
        n = struct.unpack_from("<I", self.buf, at)[0]
        return self.buf[at + 4:at + 4 + n]

    def tables(self, field: int) -> list[_Table]:
        at = self._indirect(field)
        if at is None:
            return []
        n = struct.unpack_from("<I", self.buf, at)[0]
        out = []
        for i in range(n):
            elem = at + 4 + 4 * i
            out.append(_Table(self.buf, elem + struct.unpack_from("<I", self.buf, elem)[0]))
        return out


@dataclass(slots=True)
class _Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: Any
    data: np.ndarray | None  # constant contents, None for activations


@dataclass(slots=True)
class _Op:
    kind: str  # builtin name or custom code
    inputs: list[int]
    outputs: list[int]
    options: _Table | None
    custom_options: bytes


@dataclass(slots=True)
class TFLiteGraph:
    """The one subgraph of a TFLite model, decoded."""

    tensors: list[_Tensor]
    ops: list[_Op]
    inputs: list[int]
    outputs: list[int]


def read_tflite(data: bytes, where: str = "model") -> TFLiteGraph:
    """Decode the tensors and operators of a TFLite flatbuffer's first subgraph."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{where}: not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        model = _Table(data, struct.unpack_from("<I", data, 0)[0])
        codes = []
        for code in model.tables(1):
            builtin = max(code.scalar(0, "b", 0), code.scalar(3, "i", 0))
            codes.append(code.string(1) if builtin == 32 else _BUILTIN.get(builtin, f"#{builtin}"))
        buffers = [b.bytes(0) for b in model.tables(4)]
        subgraphs = model.tables(2)
        if len(subgraphs) != 1:
            raise ModelError(f"{where}: expected one subgraph, found {len(subgraphs)}")
        sub = subgraphs[0]
        tensors = []
        for i, t in enumerate(sub.tables(0)):
            shape = tuple(t.vector(0, "i"))
            ttype = t.scalar(1, "b", 0)
            if ttype not in _DTYPES:
                raise ModelError(f"{where}: tensor {i} has unsupported TFLite type {ttype}")
            dtype = _DTYPES[ttype]
            raw = buffers[t.scalar(2, "I", 0)] if buffers else b""
            array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy() if raw else None
            tensors.append(_Tensor(i, t.string(3) or f"t{i}", shape, dtype, array))
        ops = []
        for op in sub.tables(3):
            kind = codes[op.scalar(0, "I", 0)]
            ops.append(_Op(
                kind=kind or "CUSTOM",
                inputs=op.vector(1, "i"),
                outputs=op.vector(2, "i"),
                options=op.table(4),
                custom_options=op.bytes(5),
            ))
        return TFLiteGraph(tensors, ops, sub.vector(1, "i"), sub.vector(2, "i"))
    except (struct.error, IndexError, ValueError) as exc:
        raise ModelError(f"{where}: malformed TFLite flatbuffer ({exc})") from exc


# -- the converter -----------------------------------------------------------------------------

def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite SAME padding for one axis: (before, after), the odd pixel going after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class _Builder:
    def __init__(self, graph: TFLiteGraph, where: str) -> None:
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.graph = graph
        self.where = where
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.consts: dict[int, np.ndarray] = {
            t.index: t.data for t in graph.tensors if t.data is not None
        }
        self._count = 0

    # names are positional, so the same flatbuffer always yields the same graph
    def name(self, index: int) -> str:
        if index in self.graph.inputs or index in self.graph.outputs:
            return self.graph.tensors[index].name
        return f"t{index}"

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, array: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str],
             **attrs: Any) -> None:
        self.nodes.append(self.helper.make_node(
            op_type, list(inputs), list(outputs), name=self.fresh(op_type.lower()), **attrs))

    def value(self, index: int) -> str:
        """ONNX name of an operator input: activations by name, constants as initializers."""
        if index in self.consts:
            array = self.consts[index]
            if array.dtype == np.float16:
                array = array.astype(np.float32)
            if array.ndim == 4:  # NHWC constant → NCHW
                array = array.transpose(0, 3, 1, 2)
            elif array.ndim == 1 and array.size > 1:  # per-channel → broadcast over NCHW
                array = array.reshape(1, -1, 1, 1)
            return self.const(array, "c")
        return self.name(index)

    def shape(self, index: int) -> tuple[int, ...]:
        return self.graph.tensors[index].shape

    def activation(self, code: int, out: str) -> str:
        """Apply a fused activation; returns the name the op itself should write to."""
        if code == 0:
            return out
        if code not in _ACTIVATIONS:
            raise ModelError(f"{self.where}: unsupported fused activation {code}")
        pre = self.fresh("pre_act")
        if code == 1:
            self.node("Relu", [pre], [out])
        else:
            self.node("Clip", [pre, self.const(np.float32(0), "lo"),
                               self.const(np.float32(6), "hi")], [out])
        return pre


def _opt(op: _Op, field: int, fmt: str, default: Any = 0) -> Any:
    return op.options.scalar(field, fmt, default) if op.options is not None else default


def _conv(b: _Builder, op: _Op, depthwise: bool) -> None:
    x, w_idx, bias_idx = op.inputs[0], op.inputs[1], op.inputs[2] if len(op.inputs) > 2 else -1
    weights = b.consts.get(w_idx)
    if weights is None:
        raise ModelError(f"{b.where}: {op.kind} with non-constant weights is not supported")
    weights = weights.astype(np.float32)
    padding = _opt(op, 0, "b")
    stride_w, stride_h = _opt(op, 1, "i", 1), _opt(op, 2, "i", 1)
    if depthwise:
        act = _opt(op, 4, "b")
        dil_w, dil_h = _opt(op, 5, "i", 1), _opt(op, 6, "i", 1)
        channels = b.shape(x)[3]
        kernel = weights.transpose(3, 0, 1, 2)  # [1,H,W,C·M] → [C·M,1,H,W]
        group = channels
    else:
        act = _opt(op, 3, "b")
        dil_w, dil_h = _opt(op, 4, "i", 1), _opt(op, 5, "i", 1)
        kernel = weights.transpose(0, 3, 1, 2)  # OHWI → OIHW
        group = 1
    kh, kw = kernel.shape[2], kernel.shape[3]
    _, in_h, in_w, _ = b.shape(x)
    if padding == 0:  # SAME
        top, bottom = _same_pads(in_h, kh, stride_h, dil_h)
        left, right = _same_pads(in_w, kw, stride_w, dil_w)
    else:
        top = bottom = left = right = 0
    inputs = [b.name(x), b.const(kernel, "w")]
    if bias_idx >= 0:
        inputs.append(b.const(b.consts[bias_idx].astype(np.float32), "b"))
    out = b.activation(act, b.name(op.outputs[0]))
    b.node("Conv", inputs, [out], kernel_shape=[kh, kw], strides=[stride_h, stride_w],
           dilations=[dil_h, dil_w], pads=[top, left, bottom, right], group=group)


def _transpose_conv_bias(b: _Builder, op: _Op) -> None:
    # MediaPipe's custom op: options are a raw TfLiteTransposeConvParams struct
    # {padding (1 = SAME, 2 = VALID), stride_width, stride_height}; weights are OHWI.
    if len(op.custom_options) < 12:
        raise ModelError(f"{b.where}: Convolution2DTransposeBias without its 12-byte options")
    padding, stride_w, stride_h = struct.unpack_from("<3i", op.custom_options, 0)
    x, w_idx, bias_idx = op.inputs
    weights = b.consts[w_idx].astype(np.float32)
    kernel = weights.transpose(3, 0, 1, 2)  # OHWI → [C_in, C_out, H, W]
    kh, kw = kernel.shape[2], kernel.shape[3]
    _, in_h, in_w, _ = b.shape(x)
    _, out_h, out_w, _ = b.shape(op.outputs[0])
    pads = []
    for size_in, size_out, k, s in ((in_h, out_h, kh, stride_h), (in_w, out_w, kw, stride_w)):
        full = (size_in - 1) * s + k
        # the full transposed output is cropped to the stored output size; SAME centres the
        # crop (odd pixel at the end), VALID keeps the start
        total = full - size_out
        pads.append((total // 2, total - total // 2) if padding == 1 else (0, total))
    b.node("ConvTranspose",
           [b.name(x), b.const(kernel, "w"), b.const(b.consts[bias_idx].astype(np.float32), "b")],
           [b.name(op.outputs[0])], kernel_shape=[kh, kw], strides=[stride_h, stride_w],
           pads=[pads[0][0], pads[1][0], pads[0][1], pads[1][1]])


def _pool(b: _Builder, op: _Op) -> None:
    padding = _opt(op, 0, "b")
    stride_w, stride_h = _opt(op, 1, "i", 1), _opt(op, 2, "i", 1)
    fw, fh = _opt(op, 3, "i", 1), _opt(op, 4, "i", 1)
    act = _opt(op, 5, "b")
    x = op.inputs[0]
    _, in_h, in_w, _ = b.shape(x)
    out = b.activation(act, b.name(op.outputs[0]))
    if padding == 1 and (fh, fw) == (in_h, in_w):
        b.node("GlobalAveragePool", [b.name(x)], [out])
        return
    if padding == 0:
        top, bottom = _same_pads(in_h, fh, stride_h)
        left, right = _same_pads(in_w, fw, stride_w)
    else:
        top = bottom = left = right = 0
    # TFLite averages over the valid pixels only
    b.node("AveragePool", [b.name(x)], [out], kernel_shape=[fh, fw], strides=[stride_h, stride_w],
           pads=[top, left, bottom, right], count_include_pad=0)


def _binary(b: _Builder, op: _Op, onnx_op: str) -> None:
    act = _opt(op, 0, "b")
    out = b.activation(act, b.name(op.outputs[0]))
    b.node(onnx_op, [b.value(op.inputs[0]), b.value(op.inputs[1])], [out])


def _mean(b: _Builder, op: _Op) -> None:
    x, axes_idx = op.inputs
    axes = b.consts.get(axes_idx)
    if axes is None or len(b.shape(x)) != 4:
        raise ModelError(f"{b.where}: MEAN needs constant axes over a 4-D tensor")
    nhwc_to_nchw = {0: 0, 1: 2, 2: 3, 3: 1, -1: 1, -2: 3, -3: 2, -4: 0}
    onnx_axes = sorted(nhwc_to_nchw[int(a)] for a in axes.reshape(-1))
    keep = bool(_opt(op, 0, "b"))
    if not keep:
        raise ModelError(f"{b.where}: MEAN without keep_dims is not supported")
    b.node("ReduceMean", [b.name(x)], [b.name(op.outputs[0])], axes=onnx_axes, keepdims=1)


def _resize(b: _Builder, op: _Op) -> None:
    x = op.inputs[0]
    _, in_h, in_w, _ = b.shape(x)
    _, out_h, out_w, _ = b.shape(op.outputs[0])
    align_corners = bool(_opt(op, 2, "b"))
    half_pixel = bool(_opt(op, 3, "b"))
    mode = ("align_corners" if align_corners else "half_pixel" if half_pixel else "asymmetric")
    # scales rather than sizes keep the batch axis free; exact for the integer factors used here
    scales = np.array([1.0, 1.0, out_h / in_h, out_w / in_w], dtype=np.float32)
    if int(in_h * scales[2]) != out_h or int(in_w * scales[3]) != out_w:
        raise ModelError(f"{b.where}: RESIZE_BILINEAR {in_h}×{in_w} → {out_h}×{out_w} "
                         "is not an exact scale")
    b.node("Resize", [b.name(x), "", b.const(scales, "scales")], [b.name(op.outputs[0])],
           mode="linear", coordinate_transformation_mode=mode)


def _unary(onnx_op: str) -> Callable[[_Builder, _Op], None]:
    def convert(b: _Builder, op: _Op) -> None:
        b.node(onnx_op, [b.name(op.inputs[0])], [b.name(op.outputs[0])])
    return convert


_CONVERTERS: dict[str, Callable[[_Builder, _Op], None]] = {
    "CONV_2D": lambda b, op: _conv(b, op, depthwise=False),
    "DEPTHWISE_CONV_2D": lambda b, op: _conv(b, op, depthwise=True),
    "ADD": lambda b, op: _binary(b, op, "Add"),
    "MUL": lambda b, op: _binary(b, op, "Mul"),
    "HARD_SWISH": _unary("HardSwish"),
    "RELU": _unary("Relu"),
    "LOGISTIC": _unary("Sigmoid"),
    "AVERAGE_POOL_2D": _pool,
    "MEAN": _mean,
    "RESIZE_BILINEAR": _resize,
    "Convolution2DTransposeBias": _transpose_conv_bias,
}


def tflite_to_onnx(data: bytes, where: str = "model") -> Any:
    """Convert a TFLite flatbuffer to an ``onnx.ModelProto`` with NCHW float32 input and
    output and a free batch axis."""
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError as exc:
        raise EngineUnavailableError(
            "converting a TFLite model needs the onnx package: pip install "
            "'streammatte[mediapipe]'") from exc
    graph = read_tflite(data, where)
    b = _Builder(graph, where)
    for op in graph.ops:
        if op.kind == "DEQUANTIZE":
            src = op.inputs[0]
            if src not in b.consts:
                raise ModelError(f"{where}: DEQUANTIZE of a non-constant tensor is unsupported")
            # fp16 weights stored compactly: fold to float32 now, exactly as TFLite does at load
            b.consts[op.outputs[0]] = b.consts[src].astype(np.float32)
            continue
        convert = _CONVERTERS.get(op.kind)
        if convert is None:
            raise ModelError(f"{where}: TFLite operator {op.kind} is not supported by the "
                             f"converter (supported: {', '.join(sorted(_CONVERTERS))})")
        convert(b, op)

    def nhwc_info(index: int, name: str) -> Any:
        _, h, w, c = graph.tensors[index].shape
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", c, h, w])

    inputs, outputs = [], []
    for index in graph.inputs:
        if len(graph.tensors[index].shape) != 4 or graph.tensors[index].dtype != np.float32:
            raise ModelError(f"{where}: expected a float32 NHWC image input")
        inputs.append(nhwc_info(index, b.name(index)))
    for index in graph.outputs:
        outputs.append(nhwc_info(index, b.name(index)))
    onnx_graph = helper.make_graph(b.nodes, "tflite_converted", inputs, outputs,
                                   initializer=b.initializers)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="streammatte.models.tflite",
                              producer_version=CONVERTER_VERSION)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def convert_tflite(src: Path, dest: Path) -> None:
    """The ``tflite`` pull-time converter: ``src`` (.tflite) → ``dest`` (.onnx)."""
    model = tflite_to_onnx(Path(src).read_bytes(), where=str(src))
    Path(dest).write_bytes(model.SerializeToString(deterministic=True))
