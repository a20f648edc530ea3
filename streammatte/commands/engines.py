"""``streammatte engines build|list``: TensorRT engines built ahead, so a live session never
waits for a build.

``build`` pulls the model if needed and writes the serialized engine and the timing cache into
the engine cache (``trt/`` beside the model cache); ``list`` shows what is cached and what each
engine was built for. Without TensorRT, ``build`` says how to install it and exits with 2.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import ConfigError
from ..models.catalog import get_spec
from ..models.store import ModelStore, default_models_dir
from .common import SubParsers, add_models_dir_option, models_dir_from, parse_size


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("engines", help="build TensorRT engines ahead of time",
                                   description=__doc__)
    add_models_dir_option(parser)
    parser.add_argument("--cache-dir", type=Path, metavar="DIR",
                        help="engine cache (default: trt/ in the model cache)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="build (or find cached) a TensorRT engine")
    build.add_argument("name", metavar="NAME", help="catalog model, e.g. u2netp")
    build.add_argument("--precision", choices=["fp16", "fp32"], default="fp16",
                       help="default: fp16")
    build.add_argument("--batch", type=_positive, default=1,
                       help="largest batch the engine takes (default: 1)")
    build.add_argument("--frame-size", type=parse_size, metavar="WxH",
                       help="for models that run at the frame's own resolution")
    build.add_argument("--max-frame-size", type=parse_size, metavar="WxH",
                       help="largest frame such a model must take (default: --frame-size)")
    build.add_argument("--device", default="cuda:0", help="cuda:N (default: cuda:0)")
    build.add_argument("--rebuild", action="store_true", help="ignore a cached engine")
    actions.add_parser("list", help="cached engines and what each was built for")
    parser.set_defaults(func=run)


def _cache_dir(args: argparse.Namespace) -> Path:
    if args.cache_dir:
        return Path(args.cache_dir)
    return (models_dir_from(args) or default_models_dir()) / "trt"


def _build(args: argparse.Namespace) -> int:
    from ..cuda.runtime import CudaContext, import_pycuda, parse_device
    from ..inference.trt import build_engine, import_tensorrt

    spec = get_spec(args.name)
    # fail before any download when the machine cannot build at all
    import_tensorrt()
    import_pycuda()
    if spec.input.size is None and args.frame_size is None:
        raise ConfigError(f"{spec.name} runs at the frame's own resolution: pass "
                          "--frame-size WxH (and --max-frame-size for a range)")
    context = CudaContext(parse_device(args.device))
    try:
        model_path = ModelStore(models_dir_from(args)).ensure(spec)
        start = time.perf_counter()
        path, key = build_engine(spec, model_path, context=context, precision=args.precision,
                                 batch=args.batch, cache_dir=_cache_dir(args),
                                 frame_size=args.frame_size,
                                 max_frame_size=args.max_frame_size, rebuild=args.rebuild)
        elapsed = time.perf_counter() - start
    finally:
        context.close()
    print(f"{spec.name}: {path} ({key.precision}, {key.profiles[0].label()}, TensorRT "
          f"{key.tensorrt_version}, {key.gpu_name} sm_{key.compute_capability[0]}"
          f"{key.compute_capability[1]}; {elapsed:.1f} s)")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..inference.trt import read_sidecar

    cache = _cache_dir(args)
    engines = sorted(cache.glob("*.engine")) if cache.is_dir() else []
    if not engines:
        print(f"no engines in {cache} (build one: streammatte engines build u2netp)")
        return 0
    for path in engines:
        meta = read_sidecar(path)
        if meta is None:
            print(f"{path.name}: no readable metadata (rebuilt on next use)")
            continue
        cc = meta.get("compute_capability", ["?", "?"])
        print(f"{path.name}: {meta.get('precision')} {', '.join(meta.get('profiles', []))}; "
              f"TensorRT {meta.get('tensorrt_version')}, {meta.get('gpu_name')} "
              f"sm_{cc[0]}{cc[1]}; {path.stat().st_size / 1e6:.1f} MB")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "build":
        return _build(args)
    return _list(args)
