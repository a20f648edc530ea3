"""The GPU path: pycuda context and stream, pinned host buffers, pre/post-processing kernels.

Importing this package imports neither pycuda nor TensorRT: the pure-Python parts (buffer
planning in :mod:`.plan`, device selection in :mod:`.select`, kernel source in :mod:`.kernels`
and its numpy twins in :mod:`.reference`) work on any machine; :mod:`.runtime` loads pycuda on
first use and raises EngineUnavailableError naming ``pip install 'streammatte[trt]'`` without it.
"""
