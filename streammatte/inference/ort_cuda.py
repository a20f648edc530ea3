"""ONNX Runtime's CUDA provider on the pipeline's CUDA stream, with I/O binding: the GPU path for
machines with onnxruntime-gpu but no TensorRT.

The session is given our stream (``user_compute_stream``) and binds our device buffers as its
input and output, so ``enqueue`` neither copies nor synchronises: it slots into
:class:`streammatte.cuda.runtime.GpuMatter` exactly like the TensorRT engine. ``infer`` (the
host API) stages through pinned buffers. Needs onnxruntime-gpu and pycuda; a graph's output
must have fixed dimensions apart from the batch, so its buffer can be planned ahead.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ..errors import EngineUnavailableError, ModelError
from ..models.catalog import ModelSpec
from .base import Engine, TensorSpec
from .ort import _tensor_specs

CUDA_PROVIDER = "CUDAExecutionProvider"
INSTALL_HINT = ("pip install onnxruntime-gpu (in place of onnxruntime) and "
                "pip install 'streammatte[trt]' for pycuda")


def cuda_provider_options(device_index: int, stream_handle: int) -> dict[str, str]:
    """Provider options that put ONNX Runtime's CUDA work on our stream."""
    return {
        "device_id": str(device_index),
        "user_compute_stream": str(stream_handle),
        "has_user_compute_stream": "1",
        # the pipeline plans its own memory: do not let ORT's arena grab the GPU
        "arena_extend_strategy": "kSameAsRequested",
    }


def static_sample_shape(spec: TensorSpec) -> tuple[int, ...]:
    """The per-sample shape of ``spec`` (batch axis dropped), or ModelError if any other
    dimension is free."""
    dims = spec.shape[1:]
    if any(not isinstance(d, int) or d < 1 for d in dims):
        raise ModelError(f"{spec.name}: shape {spec.shape} has free dimensions besides the "
                         "batch; the ONNX Runtime CUDA path needs them fixed")
    return tuple(int(d) for d in dims)  # type: ignore[arg-type]


class OrtCudaEngine(Engine):
    """A catalog model run by ONNX Runtime's CUDA provider on our stream and buffers."""

    def __init__(self, spec: ModelSpec, model_path: Path, *, device: str = "auto",
                 context: Any = None, stream: Any = None) -> None:
        available = ort.get_available_providers()
        if CUDA_PROVIDER not in available:
            raise EngineUnavailableError(
                f"this onnxruntime has no CUDA provider (available: {', '.join(available)}): "
                f"{INSTALL_HINT}")
        from ..cuda.runtime import CudaContext, HostStaging, import_pycuda, parse_device

        cuda = import_pycuda()
        self.name = spec.name
        self.spec = spec
        self.input_spec = spec.input
        self.output_spec = spec.output
        self.context = context if context is not None else CudaContext(parse_device(device))
        self._own_context = context is None
        self.device = f"cuda:{self.context.index}"
        with self.context.active():
            self.stream = stream if stream is not None else cuda.Stream()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers: list[Any] = [
            (CUDA_PROVIDER, cuda_provider_options(self.context.index, self.stream.handle)),
            "CPUExecutionProvider",
        ]
        try:
            with self.context.active():
                self._session: ort.InferenceSession | None = ort.InferenceSession(
                    str(model_path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{model_path}: ONNX Runtime (CUDA) cannot load it ({exc})"
                             ) from exc
        if self._session.get_providers()[0] != CUDA_PROVIDER:
            raise EngineUnavailableError(
                f"ONNX Runtime did not start its CUDA provider on {self.context.name} "
                f"(got {self._session.get_providers()}): check the CUDA/cuDNN libraries "
                "onnxruntime-gpu needs (`streammatte doctor`)")
        self.provider = f"onnxruntime {CUDA_PROVIDER} I/O binding ({self.context.name})"
        self._inputs = _tensor_specs(self._session.get_inputs())
        self._outputs = _tensor_specs(self._session.get_outputs())
        self._input_name = spec.input.name or next(iter(self._inputs))
        if self._input_name not in self._inputs:
            raise ModelError(f"{model_path}: no input named {self._input_name!r} (graph "
                             f"inputs: {', '.join(self._inputs)})")
        if spec.output.index >= len(self._outputs):
            raise ModelError(f"{model_path}: the catalog reads output {spec.output.index} but "
                             f"the graph has {len(self._outputs)}")
        self._output_name = list(self._outputs)[spec.output.index]
        in_spec, out_spec = self._inputs[self._input_name], self._outputs[self._output_name]
        self._in_sample = static_sample_shape(in_spec)
        self._out_sample = static_sample_shape(out_spec)
        batch_dim = in_spec.shape[0]
        self.max_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else 64
        self._run_options = ort.RunOptions()
        # enqueue only: the pipeline orders work on the stream with events
        self._run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        self._staging = HostStaging(self)

    @property
    def inputs(self) -> Mapping[str, TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Mapping[str, TensorSpec]:
        return self._outputs

    @property
    def input_dtype(self) -> str:
        return self._inputs[self._input_name].dtype

    @property
    def output_dtype(self) -> str:
        return self._outputs[self._output_name].dtype

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, *self._in_sample)

    def output_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, *self._out_sample)

    def enqueue(self, input_ptr: int, output_ptr: int, batch: int) -> None:
        """Queue one inference of ``batch`` samples on ``self.stream`` over device buffers."""
        if self._session is None:
            raise RuntimeError(f"engine {self.name} is closed")
        if not 1 <= batch <= self.max_batch:
            raise ValueError(f"batch of {batch} is more than {self.name} takes "
                             f"({self.max_batch})")
        binding = self._session.io_binding()
        index = self.context.index
        binding.bind_input(self._input_name, "cuda", index, np.dtype(self.input_dtype).type,
                           list(self.input_shape(batch)), int(input_ptr))
        for name in self._outputs:
            if name == self._output_name:
                binding.bind_output(name, "cuda", index, np.dtype(self.output_dtype).type,
                                    list(self.output_shape(batch)), int(output_ptr))
            else:  # outputs we do not read still need somewhere to go
                binding.bind_output(name, "cuda", index)
        self._session.run_with_iobinding(binding, self._run_options)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self._staging.infer(batch)

    def close(self) -> None:
        if getattr(self, "_session", None) is None:
            return
        self._session = None
        with self.context.active():
            self._staging.close()
        if self._own_context:
            self.context.close()
