"""``streammatte models list|pull|verify|path|add|bench``: the model catalog and its cache.

Gated sources (BRIA's Hugging Face pages) need a token: set ``HF_TOKEN`` (accept the model's
terms on its page first). ``add NAME FILE`` copies a file you downloaded yourself into the cache
after it matches the catalog's checksum.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import ModelError
from ..inference import BUILTIN_GOOD_FOR
from ..models.catalog import ModelSpec, UrlSource, get_spec, load_catalog
from ..models.store import ModelStore
from ..progress import DownloadProgress
from .common import SubParsers, add_models_dir_option, hf_auth_tokens, models_dir_from

#: DAVIS data beside a source checkout (../shared/data/davis)
_DEFAULT_DAVIS = Path(__file__).resolve().parents[3] / "shared" / "data" / "davis"


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("models", help="list, pull and verify models",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_models_dir_option(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every model: what it is good for, file size, "
                                 "licence, whether it is cached")
    listing.add_argument("--long", "-l", action="store_true",
                         help="also the task, input size, checksum, cache path and every "
                         "download source")
    for name, text in (("pull", "download and verify"), ("verify", "re-hash the cached file"),
                       ("path", "print the cached file's path")):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("names", nargs="*" if name != "path" else 1, metavar="NAME",
                         help="model names (default for pull/verify: u2netp / every cached one)")
    add = actions.add_parser("add", help="verify a file you downloaded and put it in the cache")
    add.add_argument("name", metavar="NAME", help="catalog model the file is")
    add.add_argument("file", type=Path, metavar="FILE",
                     help="the model file (or, for MediaPipe, the .tflite it is converted from)")
    bench = actions.add_parser("bench", help="ms/frame on this CPU and IoU/MAD against DAVIS "
                               "ground truth, per model")
    bench.add_argument("names", nargs="*", metavar="NAME",
                       help="models to measure (default: every cached one of u2netp, u2net, "
                       "modnet, mediapipe-selfie, mediapipe-selfie-landscape)")
    bench.add_argument("--davis", type=Path, default=_DEFAULT_DAVIS, metavar="DIR",
                       help="DAVIS folder with <sequence>/frames and <sequence>/masks "
                       "(default: ../shared/data/davis)")
    bench.add_argument("--sequences", default="parkour,car-shadow",
                       help="comma-separated DAVIS sequences (default: parkour,car-shadow)")
    bench.add_argument("--stride", type=int, default=1,
                       help="use every Nth frame (default: 1, all frames)")
    bench.add_argument("--threads", type=int, default=None,
                       help="ONNX Runtime intra-op threads (default: one per core)")
    bench.add_argument("--pull", action="store_true", help="pull models that are not cached")
    parser.set_defaults(func=run)


def _size(spec: ModelSpec) -> str:
    if not spec.size_bytes:
        return "?"
    return (f"{spec.size_bytes / 1e9:.2f} GB" if spec.size_bytes >= 1e9
            else f"{spec.size_bytes / 1e6:.1f} MB")


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def _list(store: ModelStore, long: bool) -> int:
    catalog = load_catalog()
    if long:
        return _list_long(store, catalog.values())
    rows = [("NAME", "GOOD FOR", "SIZE", "LICENCE", "CACHED")]
    for spec in catalog.values():
        licence = spec.licence + (" ⚠" if spec.non_commercial else "")
        rows.append((spec.name, spec.good_for or spec.title, _size(spec), licence,
                     "yes" if store.is_cached(spec) else "no"))
    for name, good_for in BUILTIN_GOOD_FOR.items():
        rows.append((name, good_for, "-", "builtin", "-"))
    for line in _table(rows):
        print(line)
    print()
    if any(s.non_commercial for s in catalog.values()):
        print("⚠ non-commercial licence: not for commercial use")
    if any(isinstance(s, UrlSource) and s.gated for spec in catalog.values()
           for s in spec.sources):
        print("gated sources need a Hugging Face token: accept the model's terms, then set "
              "HF_TOKEN")
    print("models list --long: input sizes, checksums and download sources")
    return 0


def _list_long(store: ModelStore, specs: Iterable[ModelSpec]) -> int:
    for spec in specs:
        print(f"{spec.name}: {spec.title}")
        size = f"{_size(spec)} ({spec.size_bytes} bytes)" if spec.size_bytes else "size unknown"
        print(f"  {spec.task}, input {spec.input.describe_size()}, {size}, "
              f"{spec.licence_label()}")
        if spec.good_for:
            print(f"  good for: {spec.good_for}")
        print(f"  {spec.checksum[0]}: {spec.checksum[1]}")
        print(f"  cached: {store.path(spec) if store.is_cached(spec) else 'no'}")
        for source in spec.sources:
            print(f"  source: {source.describe()}")
        if not spec.sources:
            print("  source: none (bring your own file: models add NAME FILE)")
        print()
    for name, good_for in BUILTIN_GOOD_FOR.items():
        print(f"{name}: builtin engine, no weights; good for: {good_for}")
    return 0


def _bench(args: argparse.Namespace, store: ModelStore) -> int:
    from ..models.bench import DEFAULT_MODELS, format_table, run_bench

    if not args.davis.is_dir():
        print(f"{args.davis}: DAVIS data not found (pass --davis DIR)", file=sys.stderr)
        return 2
    chosen = []
    for name in args.names or DEFAULT_MODELS:
        spec = get_spec(name)
        if args.pull:
            chosen.append((spec, store.ensure(spec, DownloadProgress())))
        elif store.is_cached(spec):
            chosen.append((spec, store.verify(spec)))
        else:
            print(f"{name}: not cached, skipped (pull it, or pass --pull)", file=sys.stderr)
    if not chosen:
        print("no model to measure", file=sys.stderr)
        return 1
    sequences = [s for s in args.sequences.split(",") if s]
    results = run_bench(
        chosen, args.davis, sequences=sequences, stride=max(1, args.stride), threads=args.threads,
        on_result=lambda r: print(f"{r.name}: {r.infer_ms:.1f} ms/frame ({r.provider})",
                                  file=sys.stderr),
    )
    print(format_table(results))
    return 0


def run(args: argparse.Namespace) -> int:
    store = ModelStore(models_dir_from(args), auth_tokens=hf_auth_tokens())
    if args.action == "list":
        return _list(store, args.long)
    if args.action == "bench":
        return _bench(args, store)
    if args.action == "path":
        spec = get_spec(args.names[0])
        print(store.verify(spec))
        return 0
    if args.action == "add":
        spec = get_spec(args.name)
        path = store.add_file(spec, args.file)
        print(f"{spec.name}: {path} ({spec.checksum[0]} ok, {spec.licence_label()})")
        return 0
    if args.action == "pull":
        names = args.names or ["u2netp"]
        for name in names:
            spec = get_spec(name)
            path = store.ensure(spec, DownloadProgress())
            print(f"{spec.name}: {path} ({spec.checksum[0]} ok, {spec.licence_label()})")
        return 0
    names = args.names or [s.name for s in load_catalog().values() if store.is_cached(s)]
    failed = 0
    for name in names:
        spec = get_spec(name)
        try:
            store.verify(spec)
            print(f"{spec.name}: ok")
        except ModelError as exc:
            print(f"{spec.name}: FAILED: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0
