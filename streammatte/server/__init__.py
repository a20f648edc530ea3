"""``streammatte serve``: the web page, the HTTP API and (with aiortc) the live page.

Needs aiohttp (``pip install 'streammatte[server]'``, or ``[webrtc]`` for the live page too).
"""

from __future__ import annotations

from .app import create_app
from .settings import EXTENSIONS, ServerSettings, check_token

__all__ = ["EXTENSIONS", "ServerSettings", "check_token", "create_app"]
