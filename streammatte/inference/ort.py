"""ONNX Runtime engine: CPU, or the CUDA provider where onnxruntime-gpu offers it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import ModelError
from ..models.catalog import ModelSpec
from .base import Engine, TensorSpec

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}


def choose_providers(device: str, available: Sequence[str]) -> list[str]:
    """Providers to ask ONNX Runtime for, best first; raises if ``device`` cannot be had."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    has_cuda = "CUDAExecutionProvider" in available
    if device.startswith("cuda"):
        if not has_cuda:
            raise ModelError(
                f"device {device!r} asked for, but this onnxruntime has no CUDA provider "
                f"(available: {', '.join(available)}); install onnxruntime-gpu or use --device cpu"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device != "auto":
        raise ModelError(f"unknown device {device!r} (expected auto, cpu or cuda[:N])")
    return (["CUDAExecutionProvider"] if has_cuda else []) + ["CPUExecutionProvider"]


def _tensor_specs(args: Sequence[ort.NodeArg]) -> dict[str, TensorSpec]:
    return {
        a.name: TensorSpec(a.name, tuple(a.shape), _ORT_DTYPES.get(a.type, a.type)) for a in args
    }


class OrtEngine(Engine):
    """A catalog model run by ONNX Runtime."""

    def __init__(
        self,
        spec: ModelSpec,
        model_path: Path,
        *,
        device: str = "auto",
        intra_op_threads: int | None = None,
    ) -> None:
        self.name = spec.name
        self.spec = spec
        self.input_spec = spec.input
        self.output_spec = spec.output
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads or (os.cpu_count() or 1)
        # Idle ORT workers spin by default, burning the cores that decode, the temporal stage
        # and encode share with it; without spinning the pipeline ran ~3 % faster end to end
        # on 2 cores (engine-only ~2 % slower).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = choose_providers(device, ort.get_available_providers())
        try:
            self._session: ort.InferenceSession | None = ort.InferenceSession(
                str(model_path), sess_options=options, providers=providers
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{model_path}: not a loadable ONNX model ({exc})") from exc
        used = self._session.get_providers()[0]
        self.provider = f"onnxruntime {used}"
        self.device = "cuda:0" if used == "CUDAExecutionProvider" else "cpu"
        self._inputs = _tensor_specs(self._session.get_inputs())
        self._outputs = _tensor_specs(self._session.get_outputs())
        self._check_graph(model_path)
        self._input_name = spec.input.name or next(iter(self._inputs))
        self._output_name = list(self._outputs)[spec.output.index]
        batch_dim = self._inputs[self._input_name].shape[0]
        self.max_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else 64
        # half-precision graphs (RMBG-1.4 fp16) take float16 in; frames are prepared as float32
        self._cast: type[np.floating] | None = (
            np.float16 if self._inputs[self._input_name].dtype == "float16" else None)

    def _check_graph(self, model_path: Path) -> None:
        spec = self.spec
        if spec.input.name is not None and spec.input.name not in self._inputs:
            raise ModelError(
                f"{model_path}: no input named {spec.input.name!r} as the catalog entry "
                f"{spec.name} expects (graph inputs: {', '.join(self._inputs)})"
            )
        tensor = self._inputs[spec.input.name or next(iter(self._inputs))]
        layout = spec.input.layout
        if len(tensor.shape) != 4:
            raise ModelError(
                f"{model_path}: input {tensor.name!r} has shape {tensor.shape}; the catalog "
                f"entry {spec.name} expects a 4-D {layout} image batch"
            )
        accepted = ("float32", "float16") if spec.input.dtype == "float32" else ("uint8",)
        if tensor.dtype not in accepted:
            raise ModelError(
                f"{model_path}: input {tensor.name!r} is {tensor.dtype}; the catalog entry "
                f"{spec.name} feeds {spec.input.dtype}"
            )
        channels = tensor.shape[1] if layout == "nchw" else tensor.shape[3]
        if isinstance(channels, int) and channels != 3:
            raise ModelError(
                f"{model_path}: input shape {tensor.shape} has {channels} channels; the catalog "
                f"entry {spec.name} feeds RGB ({layout})"
            )
        if spec.input.size is not None:
            w, h = spec.input.size
            expected = (3, h, w) if layout == "nchw" else (h, w, 3)
            for got, want in zip(tensor.shape[1:], expected, strict=True):
                if isinstance(got, int) and got != want:
                    raise ModelError(
                        f"{model_path}: input shape {tensor.shape} does not fit the catalog's "
                        f"{layout} {expected} for {spec.name}"
                    )
        elif any(isinstance(d, int) for d in (tensor.shape[2:] if layout == "nchw"
                                               else tensor.shape[1:3])):
            raise ModelError(
                f"{model_path}: input shape {tensor.shape} is fixed, but the catalog entry "
                f"{spec.name} sizes its input from each frame ({spec.input.describe_size()})"
            )
        if spec.output.index >= len(self._outputs):
            raise ModelError(f"{model_path}: the catalog reads output {spec.output.index} but "
                             f"the graph has {len(self._outputs)}")

    @property
    def inputs(self) -> Mapping[str, TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Mapping[str, TensorSpec]:
        return self._outputs

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise RuntimeError(f"engine {self.name} is closed")
        if batch.shape[0] > self.max_batch:
            # fixed-batch graphs (u2net's is 1) run sample by sample
            parts = [self.infer(batch[i:i + self.max_batch])
                     for i in range(0, batch.shape[0], self.max_batch)]
            return np.concatenate(parts)
        if self._cast is not None:
            batch = batch.astype(self._cast)
        (out,) = self._session.run([self._output_name], {self._input_name: batch})
        result: np.ndarray = out
        return result

    def close(self) -> None:
        self._session = None
