"""The aiohttp application behind ``streammatte serve``: page, HTTP API, and extensions.

Security, in one place (``security_middleware``):

- Bound to loopback, no token is needed, but the ``Host`` header must name loopback (a DNS
  rebinding page cannot reach the server) and unsafe methods must come from the same origin
  (another site cannot post uploads into it).
- Bound to anything else, a token is required on every request: ``Authorization: Bearer …``,
  ``?token=…`` (to open the page), or the cookie the page sets when opened with a valid token
  (so ``<img>``/``<video>``/download links work without putting the token in every URL).

Extensions: ``create_app`` calls ``install(app, settings)`` of each module in ``EXTENSIONS``
that imports; one whose optional dependency is missing (aiortc for the live page) is skipped
with a logged note, and the file API keeps working.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import ConfigError, StreamMatteError

log = logging.getLogger("streammatte.server")

#: modules whose ``install(app, settings)`` adds routes; skipped when they cannot be imported
EXTENSIONS: tuple[str, ...] = ("streammatte.server.live",)

STATIC_DIR = Path(__file__).resolve().parent / "static"
TOKEN_COOKIE = "streammatte_token"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})

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


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Everything ``streammatte serve`` is configured with. Validated on construction."""

    host: str = "127.0.0.1"
    port: int = 8080
    #: required (and then checked on every request) when ``host`` is not loopback
    token: str | None = None
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
    #: engine preselected on the page and used when a request names none
    engine: str = "u2netp"
    #: engine preselected on the live page (falls back to ``engine`` when not offered)
    live_engine: str = "mediapipe-selfie"
    #: engines offered (catalog models and builtins); None: all of them
    engines: tuple[str, ...] | None = None
    models_dir: Path | None = None
    device: str = "auto"
    #: STUN/TURN server URLs handed to WebRTC peers (live page); empty: host candidates only
    ice_servers: tuple[str, ...] = ()
    #: live WebRTC sessions at once
    max_peers: int = 4
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
                     "max_concurrent_jobs", "max_concurrent_images", "max_peers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} should be >= 1, got {getattr(self, name)}")
        if self.max_queued_jobs < 0:
            raise ConfigError(f"max_queued_jobs should be >= 0, got {self.max_queued_jobs}")
        for name in ("max_video_duration_s", "job_expiry_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} should be > 0, got {getattr(self, name)}")

    @property
    def token_required(self) -> bool:
        """A token is checked when one is set, and must be set off loopback."""
        return bool(self.token) or not is_loopback(self.host)


#: the app's settings, for extensions: ``request.app[SETTINGS_KEY]``
SETTINGS_KEY = web.AppKey("streammatte.settings", ServerSettings)
#: extensions that installed, and the ones skipped with the reason
EXTENSIONS_KEY = web.AppKey("streammatte.extensions", dict)


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


def _presented_token(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if "token" in request.query:
        return request.query["token"]
    return request.cookies.get(TOKEN_COOKIE)


def token_ok(request: web.Request) -> bool:
    """True when the request may proceed as far as the token is concerned."""
    settings = request.app.get(SETTINGS_KEY)
    if settings is None:
        raise RuntimeError("check_token: this application was not made by create_app (it has "
                           "no ServerSettings); check the token another way")
    if not settings.token_required:
        return True
    presented = _presented_token(request)
    assert settings.token is not None
    return presented is not None and hmac.compare_digest(
        presented.encode("utf-8", "replace"), settings.token.encode())


def check_token(request: web.Request) -> None:
    """Raise 401 (JSON error) unless the request carries the server's token where one is
    required. The middleware already calls it for every request; extensions may call it again
    where a token arrives some other way."""
    if not token_ok(request):
        has_one = _presented_token(request) is not None
        raise api_error(
            web.HTTPUnauthorized,
            "wrong token" if has_one else
            "this server needs a token: open the URL it printed (…/?token=…) or send "
            "'Authorization: Bearer <token>'",
            **{"WWW-Authenticate": 'Bearer realm="streammatte"'})


def _host_name(host: str) -> str:
    """The name part of a Host header: ``[::1]:8080`` → ``::1``, ``localhost:80`` →
    ``localhost``."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _check_origin(request: web.Request) -> None:
    settings = request.app[SETTINGS_KEY]
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
    _check_origin(request)
    check_token(request)
    response = await handler(request)
    settings = request.app[SETTINGS_KEY]
    if settings.token and request.query.get("token") and not response.prepared:
        # the page was opened with ?token=: let its own fetches, <video> and downloads through
        response.set_cookie(TOKEN_COOKIE, settings.token, httponly=True, samesite="Strict",
                            path="/")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error under /api comes back as ``{"error": …}``; unexpected ones are logged."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or not request.path.startswith("/api/") \
                or exc.status < 400:
            raise
        return json_error(exc.status, exc.reason)
    except StreamMatteError as exc:
        return json_error(400 if isinstance(exc, ConfigError) else 422, str(exc))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return json_error(500, "internal server error (see the server log)")


def _install_extensions(app: web.Application, settings: ServerSettings) -> None:
    status: dict[str, str] = {}
    for name in settings.extensions:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            if exc.name == name:
                status[name] = "not present"
                log.debug("extension %s is not present", name)
            else:
                status[name] = f"skipped: needs {exc.name or exc} (pip install " \
                               "'streammatte[webrtc]')"
                log.info("%s disabled: %s is not installed (pip install 'streammatte[webrtc]'); "
                         "the image and video API keep working", name, exc.name or exc)
            continue
        install = getattr(module, "install", None)
        if install is None:
            raise ConfigError(f"extension {name} has no install(app, settings)")
        install(app, settings)
        status[name] = "installed"
    app[EXTENSIONS_KEY] = status


def create_app(settings: ServerSettings | None = None, **kwargs: Any) -> web.Application:
    """The whole server as an aiohttp Application (run it with ``web.run_app`` or a runner).

    ``kwargs`` go to :func:`streammatte.server.api.install` (``engines=`` swaps the engine
    provider, which is how tests plug in a fake engine).
    """
    from . import api, pages

    settings = settings or ServerSettings()
    # multipart uploads are streamed to disk by the handlers and capped there; this cap is
    # for bodies read whole (JSON, form fields)
    app = web.Application(middlewares=[error_middleware, security_middleware],
                          client_max_size=1024 * 1024)
    app[SETTINGS_KEY] = settings
    api.install(app, settings, **kwargs)
    pages.install(app, settings)
    _install_extensions(app, settings)
    return app
