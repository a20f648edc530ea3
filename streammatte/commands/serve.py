"""``streammatte serve``: the web page and HTTP API (and the live page, with aiortc).

Listens on 127.0.0.1 by default. Bound to any other address it requires a token; without
--token (or $STREAMMATTE_TOKEN) one is generated and printed, once, in the URL to open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from ..config import DEFAULT_ENGINE
from ..errors import ConfigError, EngineUnavailableError
from .common import SubParsers, add_models_dir_option, models_dir_from


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("serve", help="serve the web page and HTTP API",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1",
                     help="address to bind (default: 127.0.0.1; anything else needs a token)")
    net.add_argument("--port", type=int, default=8080, help="default: 8080 (0: any free port)")
    net.add_argument("--token", default=None,
                     help="token clients must present (default: $STREAMMATTE_TOKEN; generated "
                     "when the host is not loopback)")
    net.add_argument("--ice-server", action="append", default=[], metavar="URL",
                     dest="ice_servers", help="STUN/TURN server for the live page (repeatable)")
    net.add_argument("--max-peers", type=int, default=4, help="live sessions at once (default: 4)")
    jobs = parser.add_argument_group("jobs and limits")
    jobs.add_argument("--jobs-dir", type=Path, metavar="DIR",
                      help="uploads and results (default: a temporary folder removed on exit)")
    jobs.add_argument("--max-upload-mb", type=float, default=512,
                      help="largest upload (default: 512)")
    jobs.add_argument("--max-image-mp", type=float, default=50,
                      help="largest image in megapixels (default: 50)")
    jobs.add_argument("--max-video-s", type=float, default=600,
                      help="longest video in seconds (default: 600)")
    jobs.add_argument("--max-video-mp", type=float, default=8.3,
                      help="largest video frame in megapixels (default: 8.3, i.e. 3840×2160)")
    jobs.add_argument("--max-jobs", type=int, default=1,
                      help="video jobs running at once; more wait in a queue (default: 1)")
    jobs.add_argument("--max-queued", type=int, default=16,
                      help="jobs waiting for a slot before new ones are refused (default: 16)")
    jobs.add_argument("--job-expiry-s", type=float, default=3600,
                      help="remove finished jobs and their files after this (default: 3600)")
    engine = parser.add_argument_group("engine")
    engine.add_argument("--engine", "-e", default=DEFAULT_ENGINE,
                        help=f"engine preselected on the page (default: {DEFAULT_ENGINE})")
    engine.add_argument("--live-engine", default="mediapipe-selfie",
                        help="engine preselected on the live page (default: mediapipe-selfie, "
                        "or --engine when --engines leaves it out)")
    engine.add_argument("--engines", metavar="LIST",
                        help="comma-separated engines to offer (default: every catalog model "
                        "and builtin)")
    add_models_dir_option(engine)
    engine.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    parser.add_argument("--verbose", "-v", action="store_true", help="log every request")
    parser.set_defaults(func=run)


def _token(args: argparse.Namespace, environ: dict[str, str]) -> tuple[str | None, bool]:
    """(token, generated?)"""
    from ..server.settings import is_loopback

    token = args.token or environ.get("STREAMMATTE_TOKEN") or None
    if token is None and not is_loopback(args.host):
        return secrets.token_urlsafe(24), True
    return token, False


def settings_from(args: argparse.Namespace, environ: dict[str, str]) -> Any:
    from ..server.settings import ServerSettings, parse_ice_servers

    token, _ = _token(args, environ)
    return ServerSettings(
        host=args.host, port=args.port, token=token,
        max_upload_bytes=int(args.max_upload_mb * 1e6),
        max_image_pixels=int(args.max_image_mp * 1e6),
        max_video_duration_s=args.max_video_s,
        max_video_pixels=int(args.max_video_mp * 1e6),
        jobs_dir=args.jobs_dir, job_expiry_s=args.job_expiry_s,
        max_concurrent_jobs=args.max_jobs, max_queued_jobs=args.max_queued,
        engine=args.engine.lower(), live_engine=args.live_engine.lower(),
        engines=tuple(e.strip().lower() for e in args.engines.split(",") if e.strip())
        if args.engines else None,
        models_dir=models_dir_from(args), device=args.device,
        ice_servers=parse_ice_servers(args.ice_servers), max_peers=args.max_peers,
    )


def _url(host: str, port: int, token: str | None) -> str:
    shown = host
    if host in ("0.0.0.0", "::", ""):
        shown = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        shown = f"[{host}]"
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


async def _serve(settings: Any, verbose: bool) -> None:
    from aiohttp import web

    from ..server.app import create_app

    app = create_app(settings)
    runner = web.AppRunner(app, access_log=logging.getLogger("aiohttp.access")
                           if verbose else None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: "
                              f"{exc.strerror or exc}") from exc
        port = runner.addresses[0][1] if runner.addresses else settings.port
        print(f"streammatte: serving on {_url(settings.host, port, settings.token)}", flush=True)
        if settings.host in ("0.0.0.0", "::"):
            print(f"streammatte: listening on every interface ({settings.host}); use this "
                  "machine's address from elsewhere", flush=True)
        print("streammatte: press Ctrl-C to stop", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # a clean stop cancels running jobs and removes the temporary jobs folder
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        print("streammatte: stopping", file=sys.stderr, flush=True)
    finally:
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    import os

    try:
        import aiohttp  # noqa: F401
    except ImportError as exc:
        raise EngineUnavailableError(
            "streammatte serve needs aiohttp: pip install 'streammatte[server]'") from exc
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="streammatte: %(message)s")
    logging.getLogger("streammatte.server").setLevel(logging.INFO)
    settings = settings_from(args, dict(os.environ))
    try:
        asyncio.run(_serve(settings, args.verbose))
    except KeyboardInterrupt:
        print("streammatte: stopped", file=sys.stderr)
    return 0
