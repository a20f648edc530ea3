"""What ``streammatte serve`` is configured with, and the rules every route obeys.

One module for the whole server (the file API, the live page, and any extension):
:class:`ServerSettings`; the token check and the ``Host``/``Origin`` checks
(:func:`security_middleware`); the loopback test; the background a client may name
(:func:`check_background`); the caps an upload is held to (:func:`save_upload`,
:func:`check_media`); the JSON error shape (:func:`api_error`); and the client's session
(:func:`client_session`).

The token, when one is required, is taken from:

- ``Authorization: Bearer <token>`` (the scheme in any case), on every route;
- the ``streammatte_token`` cookie, on every route: a page opened with a valid ``?token=``
  sets it (``HttpOnly``, ``SameSite=Strict``), so that the page's own requests, ``<video>``
  and download links work without the token in their URLs;
- ``?token=<token>``, on pages only (routes added with :func:`add_page`): the URL the server
  prints opens a page, and nothing else needs the token in a URL, where it would end up in
  logs and histories.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ..compose import NAMED_COLOURS, parse_background
from ..config import DEFAULT_ENGINE
from ..errors import ConfigError
from ..temporal import DEFAULT_LIVE_MODE, TEMPORAL_FILTERS
from .probe import IMAGE_TYPES, VIDEO_TYPES, MediaInfo, MediaKind, ProbeError, probe

#: modules whose ``install(app, settings)`` adds routes; skipped when they cannot be imported
EXTENSIONS: tuple[str, ...] = ("streammatte.server.live",)

STATIC_DIR = Path(__file__).resolve().parent / "static"
TOKEN_COOKIE = "streammatte_token"
SESSION_COOKIE = "streammatte_session"

_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{22,64}")
_UPLOAD_BACKGROUND = re.compile(r"upload:[0-9a-f]{16}")
_CHUNK = 256 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the name localhost."""
    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# -- settings ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class IceServer:
    """One STUN/TURN server handed to both ends of a live session."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def __post_init__(self) -> None:
        for url in self.urls:
            if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
                raise ConfigError(f"ice server {url!r}: expected a stun: or turn: URL")

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out


def parse_ice_servers(value: object) -> tuple[IceServer, ...]:
    """IceServer objects, URL strings (``stun:host:3478``) or dicts like the browser's."""
    if value is None:
        return ()
    if isinstance(value, (str, IceServer, Mapping)):
        value = [value]
    if not isinstance(value, Sequence):
        raise ConfigError(f"ice_servers: expected a list of URLs or dicts, got {value!r}")
    servers = []
    for item in value:
        if isinstance(item, IceServer):
            servers.append(item)
        elif isinstance(item, str):
            servers.append(IceServer(urls=(item,)))
        elif isinstance(item, Mapping) and "urls" in item:
            urls = item["urls"]
            servers.append(IceServer(urls=(urls,) if isinstance(urls, str) else tuple(urls),
                                     username=item.get("username"),
                                     credential=item.get("credential")))
        else:
            raise ConfigError(f"ice_servers: expected a URL like stun:host:3478 or a dict with "
                              f"'urls', got {item!r}")
    return tuple(servers)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Everything ``streammatte serve`` is configured with, the live page included.
    Validated on construction."""

    host: str = "127.0.0.1"
    port: int = 8080
    #: required (and then checked on every request) when ``host`` is not loopback
    token: str | None = None
    #: one uploaded file (and its background file) for ``/api/remove`` and ``/api/jobs``
    max_upload_bytes: int = 512_000_000
    #: images larger than this (width × height) are refused before decoding
    max_image_pixels: int = 50_000_000
    max_video_duration_s: float = 600.0
    #: per-frame pixel cap for videos (3840×2160 by default)
    max_video_pixels: int = 3840 * 2160
    #: where uploads and results live; None: a temporary directory removed on shutdown
    jobs_dir: Path | None = None
    #: finished, failed and cancelled jobs (and their files) are removed this long after
    job_expiry_s: float = 3600.0
    #: video jobs that run at once; more wait in a queue
    max_concurrent_jobs: int = 1
    #: jobs waiting for a slot; beyond this a new job is refused with 503
    max_queued_jobs: int = 16
    #: image requests processed at once (they do not wait behind video jobs)
    max_concurrent_images: int = 2
    #: engine preselected on the pages and used when a request names none
    engine: str = DEFAULT_ENGINE
    #: engine preselected on the live page (``engine`` when this one is not offered)
    live_engine: str = "mediapipe-selfie"
    #: engines offered (catalog models and builtins); None: all of them
    engines: tuple[str, ...] | None = None
    models_dir: Path | None = None
    device: str = "auto"
    #: STUN/TURN servers handed to WebRTC peers (live page); empty: host candidates only, so
    #: nothing leaves the machine unless asked
    ice_servers: tuple[IceServer, ...] = ()
    #: live WebRTC sessions at once
    max_peers: int = 4
    #: background and smoothing a live session starts with (the page may change them)
    live_background: str = "blur"
    live_temporal: str = DEFAULT_LIVE_MODE
    #: a live peer that sends no frame for this long is torn down (it vanished without a goodbye)
    live_idle_timeout_s: float = 15.0
    #: how often a live peer is sent its statistics
    live_stats_interval_s: float = 0.5
    #: one background uploaded for live sessions (``POST /api/live/backgrounds``)
    max_live_background_bytes: int = 64_000_000
    #: live backgrounds kept at once, and their total size: the oldest no session uses make
    #: room for a new one
    max_live_backgrounds: int = 16
    max_live_backgrounds_bytes: int = 256_000_000
    #: a live background no session uses is removed this long after its upload
    live_background_expiry_s: float = 3600.0
    #: modules to install (see EXTENSIONS); tests turn them off with ()
    extensions: tuple[str, ...] = field(default=EXTENSIONS)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port should be 0..65535, got {self.port}")
        if self.token is not None and len(self.token) < 8:
            raise ConfigError("token should be at least 8 characters (let the server generate "
                              "one: leave it out)")
        if self.token_required and not self.token:
            raise ConfigError(
                f"host {self.host!r} is not loopback: a token is required (give --token, or "
                "leave it out and the CLI generates one)")
        for name in ("max_upload_bytes", "max_image_pixels", "max_video_pixels",
                     "max_concurrent_jobs", "max_concurrent_images", "max_peers",
                     "max_live_background_bytes", "max_live_backgrounds",
                     "max_live_backgrounds_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} should be >= 1, got {getattr(self, name)}")
        if self.max_queued_jobs < 0:
            raise ConfigError(f"max_queued_jobs should be >= 0, got {self.max_queued_jobs}")
        for name in ("max_video_duration_s", "job_expiry_s", "live_idle_timeout_s",
                     "live_stats_interval_s", "live_background_expiry_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} should be > 0, got {getattr(self, name)}")
        if self.max_live_backgrounds_bytes < self.max_live_background_bytes:
            raise ConfigError(
                f"max_live_backgrounds_bytes ({self.max_live_backgrounds_bytes}) should be at "
                f"least max_live_background_bytes ({self.max_live_background_bytes})")
        if not all(isinstance(s, IceServer) for s in self.ice_servers):
            raise ConfigError("ice_servers: expected IceServer objects (parse_ice_servers "
                              "turns URLs like stun:host:3478 into them)")
        if check_background(self.live_background, live=True).startswith("upload:"):
            raise ConfigError("live_background: an upload cannot be the default (it does not "
                              "exist before the server starts)")
        if self.live_temporal.lower() not in TEMPORAL_FILTERS:
            raise ConfigError(f"unknown live_temporal {self.live_temporal!r} "
                              f"(choose from: {', '.join(TEMPORAL_FILTERS)})")

    @property
    def token_required(self) -> bool:
        """A token is checked when one is set, and must be set off loopback."""
        return bool(self.token) or not is_loopback(self.host)


#: the app's settings: ``request.app[SETTINGS_KEY]``
SETTINGS_KEY = web.AppKey("streammatte.settings", ServerSettings)
#: extensions that installed, and the ones skipped with the reason
EXTENSIONS_KEY = web.AppKey("streammatte.extensions", dict)
#: the canonical paths of the pages (routes that take ``?token=``), see add_page
PAGES_KEY = web.AppKey("streammatte.pages", set)
#: the session id the middleware gave this request; aiohttp 3.14 types request storage with
#: RequestKey (and warns about plain strings), older versions take strings only
_SESSION_KEY: Any = (web.RequestKey("streammatte.session", str) if hasattr(web, "RequestKey")
                     else "streammatte.session")


# -- errors -----------------------------------------------------------------------------------

def json_error(status: int, message: str, **extra: Any) -> web.Response:
    """The API's error shape: ``{"error": message, ...}`` with the status code."""
    return web.json_response({"error": message, **extra}, status=status)


def api_error(exc_class: type[web.HTTPException], message: str,
              **headers: str) -> web.HTTPException:
    """An HTTPException carrying the JSON error shape; ``raise api_error(...)``."""
    text = json.dumps({"error": message})
    if issubclass(exc_class, web.HTTPRequestEntityTooLarge):
        # its sizes only feed aiohttp's default text; the message already says them
        return exc_class(max_size=0, actual_size=0, text=text, content_type="application/json",
                         headers=headers or None)
    return exc_class(text=text, content_type="application/json", headers=headers or None)


# -- the token, pages, the session ------------------------------------------------------------

def add_page(app: web.Application, path: str, handler: Handler) -> None:
    """Serve ``handler`` at ``GET path`` as a page: the one kind of route that takes the token
    as ``?token=`` (the URL the server prints opens it). Its answer sets the token cookie, so
    the page's own requests and media need no token in their URLs."""
    resource = app.router.add_get(path, handler).resource
    if resource is None:  # pragma: no cover - add_get always makes a resource
        raise RuntimeError(f"add_page: no resource for {path}")
    pages = app.get(PAGES_KEY)
    if pages is None:
        pages = app[PAGES_KEY] = set()
    pages.add(resource.canonical)


def _is_page(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return request.method in ("GET", "HEAD") and resource is not None \
        and resource.canonical in request.app.get(PAGES_KEY, set())


def presented_token(request: web.Request) -> str | None:
    """The token the request carries: the Authorization header, ``?token=`` on a page, or
    the cookie, in that order."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    if "token" in request.query and _is_page(request):
        return request.query["token"]
    return request.cookies.get(TOKEN_COOKIE)


def _settings(request: web.Request) -> ServerSettings:
    settings = request.app.get(SETTINGS_KEY)
    if settings is None:
        raise RuntimeError("this application was not made by create_app (it has no "
                           "ServerSettings); its routes are not protected")
    return settings


def token_ok(request: web.Request) -> bool:
    """True when the request may proceed as far as the token is concerned."""
    settings = _settings(request)
    if not settings.token_required:
        return True
    presented = presented_token(request)
    return presented is not None and settings.token is not None and hmac.compare_digest(
        presented.encode("utf-8", "replace"), settings.token.encode())


def check_token(request: web.Request) -> None:
    """Raise 401 (JSON error) unless the request carries the server's token where one is
    required. The middleware already calls it for every request; extensions may call it again
    where a token arrives some other way."""
    if token_ok(request):
        return
    if presented_token(request) is not None:
        message = "wrong token"
    elif "token" in request.query:
        message = ("?token= opens a page only: send 'Authorization: Bearer <token>' (or open "
                   "the page first, which sets the token cookie)")
    else:
        message = ("this server needs a token: open the URL it printed (…/?token=…) or send "
                   "'Authorization: Bearer <token>'")
    raise api_error(web.HTTPUnauthorized, message,
                    **{"WWW-Authenticate": 'Bearer realm="streammatte"'})


def client_session(request: web.Request) -> str:
    """The id of the browser or API client making the request: its session cookie, or the
    one the middleware sets on this response. Jobs are listed to the session that made them."""
    session: str = request[_SESSION_KEY]
    return session


def _host_name(host: str) -> str:
    """The name part of a Host header: ``[::1]:8080`` → ``::1``, ``localhost:80`` →
    ``localhost``."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _check_origin(request: web.Request, settings: ServerSettings) -> None:
    # Without a token, a page served from another name that resolves to 127.0.0.1 (DNS
    # rebinding) would count as same-origin to the browser: only loopback names may be used.
    if not settings.token_required and not is_loopback(_host_name(request.host)):
        raise api_error(web.HTTPForbidden,
                        f"Host {request.host!r} is not this server's loopback address")
    origin = request.headers.get("Origin")
    if request.method in _UNSAFE_METHODS and origin is not None and origin != "null":
        expected = f"{request.scheme}://{request.host}"
        if origin.lower() != expected.lower():
            raise api_error(web.HTTPForbidden,
                            f"cross-origin request from {origin!r} refused (expected {expected})")
    elif request.method in _UNSAFE_METHODS and origin == "null":
        raise api_error(web.HTTPForbidden, "cross-origin request from an opaque origin refused")


@web.middleware
async def security_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host and Origin checks, the token, and the session cookie, for every route."""
    settings = _settings(request)
    _check_origin(request, settings)
    check_token(request)
    sent = request.cookies.get(SESSION_COOKIE, "")
    new_session = not _SESSION_ID.fullmatch(sent)
    session = secrets.token_urlsafe(24) if new_session else sent
    request[_SESSION_KEY] = session
    response = await handler(request)
    if not response.prepared:
        if settings.token and request.query.get("token") and _is_page(request):
            # the page was opened with ?token=: let its own fetches, <video> and downloads in
            response.set_cookie(TOKEN_COOKIE, settings.token, httponly=True,
                                samesite="Strict", path="/")
        if new_session:
            # Lax, not Strict: a link followed from elsewhere must not start a new session
            # and lose the jobs listed to the old one
            response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="Lax",
                                path="/")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


# -- backgrounds and uploads ------------------------------------------------------------------

def check_background(value: str, *, live: bool = False) -> str:
    """The background a client asked for, normalised: ``transparent``, ``blur``, a colour
    name or ``#rrggbb``; for files also ``auto`` (the output format decides), for live sessions
    also ``upload:<id>`` (a file sent to ``POST /api/live/backgrounds``). Never a path: a
    client must not make the server read its own files. ConfigError names what was
    expected."""
    text = value.strip().lower()
    words = ("transparent", "blur") if live else ("auto", "transparent", "none", "alpha", "blur")
    if text in words or text in NAMED_COLOURS:
        return text
    if text.startswith("#"):
        parse_background(text)  # raises ConfigError naming the value
        return text
    if live and _UPLOAD_BACKGROUND.fullmatch(text):
        return text
    colours = ", ".join(NAMED_COLOURS)
    raise ConfigError(
        f"background {value!r}: expected transparent, blur, a colour ({colours}, #rrggbb) or "
        "upload:<id> from POST /api/live/backgrounds" if live else
        f"background {value!r}: expected auto, transparent, blur, a colour ({colours}) or "
        "#rrggbb")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


def too_large(size: int, cap: int, *, what: str = "upload",
              at_least: bool = False) -> web.HTTPException:
    """413 with the JSON error shape, saying the size and the cap."""
    more = "more than " if at_least else ""
    return api_error(web.HTTPRequestEntityTooLarge,
                     f"{what} is {more}{_mb(size)}; this server accepts up to {_mb(cap)}")


async def save_upload(read: Callable[[int], Awaitable[bytes]], target: Path, cap: int, *,
                      what: str = "upload") -> int:
    """Stream a body (``request.content.read``, or a multipart part's ``read_chunk``) into
    ``target``; 413 as soon as it passes ``cap`` bytes (the caller removes ``target``).
    Returns the size."""
    written = 0
    with target.open("wb") as out:
        while chunk := await read(_CHUNK):
            written += len(chunk)
            if written > cap:
                raise too_large(written, cap, what=what, at_least=True)
            out.write(chunk)
    return written


def check_media(settings: ServerSettings, path: Path, filename: str,
                kind: MediaKind | tuple[MediaKind, ...]) -> MediaInfo:
    """Probe an uploaded file by its bytes (headers only: nothing is decoded) and hold it to
    the server's pixel and duration caps. ``kind`` is what this route takes; a tuple means a
    background (image, or image or video). Blocking: call it from a thread.

    Raises HTTP errors with the JSON shape: 415 wrong type, 422 damaged, 413 over a cap.
    """
    try:
        info = probe(path, filename)
    except ProbeError as exc:
        raise api_error(web.HTTPUnsupportedMediaType if exc.unsupported
                        else web.HTTPUnprocessableEntity, str(exc)) from exc
    if isinstance(kind, tuple):
        if info.kind not in kind:
            raise api_error(web.HTTPUnsupportedMediaType,
                            f"{filename}: a background must be {' or '.join(kind)}, this is "
                            f"a {info.kind} ({info.format})")
    elif info.kind != kind:
        where = "POST /api/remove" if info.kind == "image" else "POST /api/jobs"
        raise api_error(web.HTTPUnsupportedMediaType,
                        f"{filename}: this is {'an' if info.kind == 'image' else 'a'} "
                        f"{info.kind} ({info.format}); expected "
                        f"{IMAGE_TYPES if kind == 'image' else VIDEO_TYPES} here "
                        f"(send {info.kind}s to {where})")
    size = f"{info.width}×{info.height}"
    if info.kind == "image" and info.pixels > settings.max_image_pixels:
        raise api_error(web.HTTPRequestEntityTooLarge,
                        f"{filename}: image is {size} ({info.pixels / 1e6:.1f} MP); this server "
                        f"accepts up to {settings.max_image_pixels / 1e6:.1f} MP")
    if info.kind == "video":
        if info.pixels > settings.max_video_pixels:
            raise api_error(web.HTTPRequestEntityTooLarge,
                            f"{filename}: video is {size} ({info.pixels / 1e6:.1f} MP per "
                            f"frame); this server accepts up to "
                            f"{settings.max_video_pixels / 1e6:.1f} MP (3840×2160 is 8.3 MP)")
        if info.duration_s is not None and info.duration_s > settings.max_video_duration_s:
            raise api_error(web.HTTPRequestEntityTooLarge,
                            f"{filename}: video is {info.duration_s:.1f} s long; this server "
                            f"accepts up to {settings.max_video_duration_s:g} s")
    return info

