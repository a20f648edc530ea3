"""``streammatte models list|pull|verify|path``: the model catalog and its cache."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ModelError
from ..models.catalog import ModelSpec, get_spec, load_catalog
from ..models.store import ModelStore
from ..progress import DownloadProgress
from .common import SubParsers, models_dir_from


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("models", help="list, pull and verify models",
                                   description=__doc__)
    parser.add_argument("--models-dir", type=Path, metavar="DIR",
                        help="model cache (default: $STREAMMATTE_MODELS_DIR or "
                        "~/.cache/streammatte/models)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="every catalog model, its licence and whether it is cached")
    for name, text in (("pull", "download and verify"), ("verify", "re-hash the cached file"),
                       ("path", "print the cached file's path")):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("names", nargs="*" if name != "path" else 1, metavar="NAME",
                         help="model names (default for pull/verify: u2netp / every cached one)")
    parser.set_defaults(func=run)


def _size(spec: ModelSpec) -> str:
    return f"{spec.size_bytes / 1e6:.1f} MB" if spec.size_bytes else "?"


def _list(store: ModelStore) -> int:
    rows = [("NAME", "TASK", "INPUT", "SIZE", "LICENCE", "CACHED", "SOURCES")]
    for spec in load_catalog().values():
        size = f"{spec.input.size[0]}×{spec.input.size[1]}" if spec.input.size else "any"
        licence = spec.licence_label() + (" ⚠" if spec.non_commercial else "")
        sources = ", ".join(s.describe() for s in spec.sources) or "none (bring your own file)"
        rows.append((spec.name, spec.task, size, _size(spec), licence,
                     "yes" if store.is_cached(spec) else "no", sources))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    print("\nbuiltin engines (no weights): mog2 (OpenCV MOG2 background subtraction, "
          "static cameras)")
    if any(s.non_commercial for s in load_catalog().values()):
        print("⚠ non-commercial licence: not for commercial use")
    return 0


def run(args: argparse.Namespace) -> int:
    store = ModelStore(models_dir_from(args))
    if args.action == "list":
        return _list(store)
    if args.action == "path":
        spec = get_spec(args.names[0])
        print(store.verify(spec))
        return 0
    if args.action == "pull":
        names = args.names or ["u2netp"]
        for name in names:
            spec = get_spec(name)
            path = store.ensure(spec, DownloadProgress())
            print(f"{spec.name}: {path} (sha256 ok, {spec.licence_label()})")
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
