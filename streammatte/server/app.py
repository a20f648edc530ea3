"""The aiohttp application behind ``streammatte serve``: page, HTTP API, and extensions.

Security lives in one place, ``server/settings.py``, and covers every route, the ones
extensions add included:

- Bound to loopback, no token is needed, but the ``Host`` header must name loopback (a DNS
  rebinding page cannot reach the server) and unsafe methods must come from the same origin
  (another site cannot post uploads into it).
- Bound to anything else, a token is required on every request: ``Authorization: Bearer …``,
  the cookie a page sets when it is opened with a valid ``?token=…``, or ``?token=`` itself on
  a page.

Extensions: ``create_app`` calls ``install(app, settings)`` of each module in
``settings.extensions`` that imports; one whose optional dependency is missing (aiortc for the
live page) is skipped with a logged note, and the file API keeps working.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

from aiohttp import web

from ..errors import ConfigError, StreamMatteError
from . import api, pages
from .settings import (
    EXTENSIONS_KEY,
    SETTINGS_KEY,
    Handler,
    ServerSettings,
    json_error,
    security_middleware,
)

log = logging.getLogger("streammatte.server")


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
    provider, which is how tests plug in a fake engine; the live page opens its engines from
    the same provider).
    """
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
