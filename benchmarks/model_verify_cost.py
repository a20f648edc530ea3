"""What re-hashing a cached model on every use costs, against loading it.

Every ``ModelStore.ensure`` (so every ``open_engine`` of a catalog model) hashes the cached
file again. This measures, in interleaved rounds on a warm page cache, the sha256 of the model
file and the ONNX Runtime session that loads the same file (the yardstick: what a user waits
for anyway), and prints medians and their ratio.

    .venv/bin/python benchmarks/model_verify_cost.py u2net --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import onnxruntime as ort

from streammatte.models.catalog import get_spec
from streammatte.models.store import ModelStore, digest_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="u2net")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    spec = get_spec(args.model)
    path = ModelStore().ensure(spec)  # also warms the page cache
    algorithm, _ = spec.checksum
    hash_s: list[float] = []
    load_s: list[float] = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        digest_of(path, algorithm)
        hash_s.append(time.perf_counter() - start)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        start = time.perf_counter()
        ort.InferenceSession(str(path), sess_options=options,
                             providers=["CPUExecutionProvider"])
        load_s.append(time.perf_counter() - start)
    size_mb = path.stat().st_size / 1e6
    h, load = statistics.median(hash_s), statistics.median(load_s)
    print(f"{spec.name}: {size_mb:.0f} MB, {args.rounds} interleaved rounds, medians")
    print(f"  {algorithm} of the cached file: {h * 1000:.0f} ms ({size_mb / h:.0f} MB/s)")
    print(f"  ONNX Runtime session (CPU):  {load * 1000:.0f} ms")
    print(f"  re-hash / load: {h / load:.2f}")


if __name__ == "__main__":
    main()
