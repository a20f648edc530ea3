"""The HTTP API and the page: images in one request, videos as jobs.

=======================  ===========================================================
``POST /api/remove``     multipart image → PNG (or JPEG/WebP) with the background removed
``POST /api/jobs``       multipart video → ``{"id": …}`` (202); processed in the background
``GET /api/jobs/{id}``   state, progress, fps, ETA, error
``GET /api/jobs/{id}/result``  the finished video
``DELETE /api/jobs/{id}``      cancel and remove its files
``GET /api/jobs``        the jobs this client (its session cookie) created
``GET /api/engines``     engines this server offers
``GET /api/info``        limits, formats, installed extensions
``GET /api/openapi.json``  the OpenAPI 3 description of all of the above
=======================  ===========================================================

Errors are JSON ``{"error": "…"}`` with a status that says whose fault it was: 400 bad
option, 401 token, 404 unknown job, 409 result not ready, 413 too large, 415 wrong file type,
422 right type but unreadable, 503 queue full.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from aiohttp import BodyPartReader, web

from .. import __version__
from ..api import matte_image
from ..compose import NAMED_COLOURS, parse_background
from ..config import MatteConfig
from ..errors import ConfigError, SourceError, StreamMatteError
from ..sinks.formats import FORMATS
from ..temporal import DEFAULT_FILE_MODE, temporal_modes
from .jobs import (
    MEDIA_TYPES,
    EngineProvider,
    Job,
    JobManager,
    QueueFullError,
    VideoOptions,
    server_temp_dir,
    sweep_dead_servers,
)
from .probe import MediaInfo, MediaKind
from .settings import (
    EXTENSIONS_KEY,
    SETTINGS_KEY,
    STATIC_DIR,
    ServerSettings,
    add_page,
    api_error,
    check_background,
    check_media,
    client_session,
    save_upload,
    too_large,
)

#: the engine provider and the job manager, for extensions that want to share them
ENGINES_KEY = web.AppKey("streammatte.engines", EngineProvider)
JOBS_KEY = web.AppKey("streammatte.jobs", JobManager)

IMAGE_FORMATS: dict[str, tuple[str, str]] = {
    "png": (".png", "image/png"), "webp": (".webp", "image/webp"),
    "jpeg": (".jpg", "image/jpeg"),
}
#: video formats a job may produce (the PNG sequence is served as one zip)
VIDEO_FORMATS: tuple[str, ...] = ("vp9", "h264", "hevc", "prores4444", "png", "matte")
#: the mask controls (streammatte.mask), as form fields: pixels for shrink, grow and feather
MASK_OPTIONS = ("threshold", "shrink", "grow", "feather", "despill")
IMAGE_OPTIONS = ("engine", "background", "only_mask", "format", "refine", *MASK_OPTIONS)
VIDEO_OPTIONS = ("engine", "background", "format", "temporal", "refine", *MASK_OPTIONS)

_FIELD_LIMIT = 4096
_FORM_OVERHEAD = 64 * 1024  # multipart boundaries and option fields around the file
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


# -- options ----------------------------------------------------------------------------------

def _flag(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name} should be true or false, got {value!r}")


def _known(options: dict[str, str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} (known: {', '.join(allowed)})")


def _number(name: str, value: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(value.strip())
    except ValueError:
        what = "a whole number of pixels" if kind is int else "a number"
        raise ConfigError(f"{name} should be {what}, got {value!r}") from None


def _mask_options(options: dict[str, str]) -> dict[str, Any]:
    """The MatteConfig fields of the mask controls a form gave (checked by MatteConfig)."""
    out: dict[str, Any] = {}
    if "threshold" in options:
        out["threshold"] = _number("threshold", options["threshold"], float)
    for name, kind in (("shrink", int), ("grow", int), ("feather", float)):
        if name in options:
            out[f"{name}_px"] = _number(name, options[name], kind)
    if "despill" in options:
        out["despill"] = _flag("despill", options["despill"])
    MatteConfig(**out)  # a bad value or combination is a 400 now, not a failed job later
    return out


def _choice(name: str, value: str, choices: tuple[str, ...] | list[str]) -> str:
    text = value.strip().lower()
    if text not in choices:
        raise ConfigError(f"unknown {name} {value!r} (choose from: {', '.join(choices)})")
    return text


# -- uploads ----------------------------------------------------------------------------------

#: the multipart part that carries an optional background picture (or clip, for videos)
BACKGROUND_PART = "background_file"


@dataclass(frozen=True, slots=True)
class Upload:
    """What one multipart request carried: the file, an optional background file, options."""

    path: Path
    filename: str
    options: dict[str, str]
    background: tuple[Path, str] | None = None  # (server path, client's file name)


async def _read_upload(request: web.Request, folder: Path) -> Upload:
    """Stream the multipart ``file`` part (and ``background_file`` if sent) into ``folder``,
    each capped at the upload limit; the other fields are merged over the query string."""
    settings = request.app[SETTINGS_KEY]
    cap = settings.max_upload_bytes
    if request.content_length is not None and \
            request.content_length > 2 * cap + _FORM_OVERHEAD:
        raise too_large(request.content_length, cap)
    if request.content_type != "multipart/form-data":
        raise api_error(web.HTTPBadRequest, "expected multipart/form-data with a 'file' field "
                        f"(got {request.content_type or 'no content type'})")
    options = {k: v for k, v in request.query.items() if k != "token"}
    files: dict[str, tuple[Path, str]] = {}
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise api_error(web.HTTPBadRequest, "nested multipart bodies are not supported")
        if part.name in ("file", BACKGROUND_PART):
            if part.name in files:
                raise api_error(web.HTTPBadRequest, f"one {part.name!r} per request")
            # server-made names: the client's file name is only ever shown back to it
            target = folder / ("upload" if part.name == "file" else "background-upload")
            files[part.name] = (target, Path(part.filename or "upload").name or "upload")
            await save_upload(part.read_chunk, target, cap)
        elif part.name:
            value = bytearray()
            while chunk := await part.read_chunk(_FIELD_LIMIT):
                value += chunk
                if len(value) > _FIELD_LIMIT:
                    raise api_error(web.HTTPBadRequest, f"field {part.name!r} is too long")
            options[part.name] = value.decode("utf-8", "replace")
    if "file" not in files:
        raise api_error(web.HTTPBadRequest, "no file in the request: send multipart/form-data "
                        "with the file in a field named 'file'")
    path, filename = files["file"]
    return Upload(path, filename, options, files.get(BACKGROUND_PART))


async def _background_upload(request: web.Request, upload: Upload,
                             kinds: tuple[MediaKind, ...]) -> Path | None:
    """The probed background file, or None; refused next to a ``background`` option."""
    if upload.background is None:
        return None
    if upload.options.get("background", "auto").strip().lower() != "auto":
        raise api_error(web.HTTPBadRequest, f"send either 'background' or '{BACKGROUND_PART}', "
                        "not both")
    path, filename = upload.background
    await _probe(request, path, filename, kinds)
    return path


async def _probe(request: web.Request, path: Path, filename: str,
                 kind: MediaKind | tuple[MediaKind, ...]) -> MediaInfo:
    settings = request.app[SETTINGS_KEY]
    return await request.app[JOBS_KEY].run_blocking(
        lambda: check_media(settings, path, filename, kind))


def _bad_option(exc: ConfigError) -> web.HTTPException:
    return api_error(web.HTTPBadRequest, str(exc))


# -- handlers ---------------------------------------------------------------------------------

async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})


async def info(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    return web.json_response({
        "version": __version__,
        "default_engine": settings.engine,
        "limits": {
            "max_upload_bytes": settings.max_upload_bytes,
            "max_image_pixels": settings.max_image_pixels,
            "max_video_pixels": settings.max_video_pixels,
            "max_video_duration_s": settings.max_video_duration_s,
            "max_concurrent_jobs": settings.max_concurrent_jobs,
            "max_queued_jobs": settings.max_queued_jobs,
            "job_expiry_s": settings.job_expiry_s,
        },
        "image_formats": list(IMAGE_FORMATS),
        "video_formats": [{"name": n, "description": FORMATS[n].description
                           + (", as one zip" if FORMATS[n].codec is None else ""),
                           "extension": FORMATS[n].extension or ".zip",
                           "alpha": FORMATS[n].alpha}
                          for n in VIDEO_FORMATS],
        "temporal": temporal_modes(),
        "default_temporal": DEFAULT_FILE_MODE,
        "backgrounds": ["auto", "transparent", "blur", *NAMED_COLOURS],
        "extensions": request.app[EXTENSIONS_KEY],
    })


async def list_engines(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    return web.json_response({"default": settings.engine,
                              "engines": request.app[ENGINES_KEY].describe()})


def _image_config(options: dict[str, str], provider: EngineProvider,
                  settings: ServerSettings) -> tuple[MatteConfig, str]:
    _known(options, IMAGE_OPTIONS)
    engine = provider.check(options.get("engine", settings.engine), for_image=True)
    fmt = _choice("format", options.get("format", "png"), list(IMAGE_FORMATS))
    only_mask = _flag("only_mask", options.get("only_mask", "false"))
    background = check_background(options.get("background", "auto"))
    if fmt == "jpeg" and not only_mask:
        if background == "auto":
            background = "white"
        elif parse_background(background).is_transparent:
            raise ConfigError("JPEG has no alpha channel: choose a background colour, or "
                              "format png or webp")
    refine = _flag("refine", options.get("refine", "false"))
    config = MatteConfig(engine=engine, background=background,
                         output_format="matte" if only_mask else "auto",
                         upsample="guided" if refine else "bilinear",
                         models_dir=settings.models_dir, device=settings.device,
                         **_mask_options(options))
    return config, fmt


def _encode_image(image: np.ndarray, fmt: str) -> bytes:
    if image.ndim == 3:
        if fmt == "jpeg":
            image = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2BGR)
        else:
            image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA if image.shape[2] == 4
                                 else cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(IMAGE_FORMATS[fmt][0], image)
    if not ok:  # pragma: no cover - OpenCV encodes every array this module makes
        raise ConfigError(f"cannot encode the result as {fmt}")
    return bytes(encoded.tobytes())


async def remove_background(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    jobs, provider = request.app[JOBS_KEY], request.app[ENGINES_KEY]
    _, folder = jobs.new_dir(image=True)
    try:
        upload = await _read_upload(request, folder)
        path, filename = upload.path, upload.filename
        try:
            config, fmt = _image_config(upload.options, provider, settings)
        except ConfigError as exc:
            raise _bad_option(exc) from exc
        await _probe(request, path, filename, "image")
        background_file = await _background_upload(request, upload, ("image",))
        if background_file is not None:
            config = replace(config, background=str(background_file))

        def work() -> tuple[bytes, str]:
            with provider.acquire(config.engine) as engine:
                out = matte_image(path, None, config, engine=engine)
                return _encode_image(out, fmt), engine.describe()

        started = time.perf_counter()
        try:
            body, described = await jobs.run_image(work)
        except StreamMatteError as exc:
            # the client knows its file by its own name, not by the server's path
            message = str(exc).replace(str(path), filename)
            status: type[web.HTTPException] = (
                web.HTTPBadRequest if isinstance(exc, ConfigError)
                else web.HTTPUnprocessableEntity if isinstance(exc, SourceError)
                else web.HTTPServiceUnavailable)  # the engine cannot be had right now
            raise api_error(status, message) from exc
        elapsed = time.perf_counter() - started
    finally:
        await jobs.discard(folder)
    extension, media_type = IMAGE_FORMATS[fmt]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename).stem)[:80] or "image"
    return web.Response(body=body, content_type=media_type, headers={
        "Content-Disposition": f'inline; filename="{stem}-nobg{extension}"',
        "X-Streammatte-Engine": described,
        "X-Streammatte-Elapsed-S": f"{elapsed:.3f}",
    })


def _video_options(options: dict[str, str], provider: EngineProvider,
                   settings: ServerSettings) -> VideoOptions:
    _known(options, VIDEO_OPTIONS)
    engine = provider.check(options.get("engine", settings.engine))
    fmt = _choice("format", options.get("format", "vp9"), VIDEO_FORMATS)
    temporal = _choice("temporal", options.get("temporal", DEFAULT_FILE_MODE),
                       temporal_modes())
    background = check_background(options.get("background", "auto"))
    if not FORMATS[fmt].alpha and not FORMATS[fmt].matte_only \
            and parse_background(background if background != "auto" else "white").is_transparent:
        raise ConfigError(f"format {fmt} has no alpha channel: choose a background colour or "
                          "blur, or format vp9 or prores4444")
    refine = _flag("refine", options.get("refine", "false"))
    return VideoOptions(engine=engine, background=background, output_format=fmt,
                        temporal=temporal, refine=refine, **_mask_options(options))


async def create_job(request: web.Request) -> web.Response:
    jobs, provider = request.app[JOBS_KEY], request.app[ENGINES_KEY]
    job_id, folder = jobs.new_dir()
    try:
        upload = await _read_upload(request, folder)
        path, filename = upload.path, upload.filename
        try:
            video_options = _video_options(upload.options, provider,
                                           request.app[SETTINGS_KEY])
        except ConfigError as exc:
            raise _bad_option(exc) from exc
        media = await _probe(request, path, filename, "video")
        background_file = await _background_upload(request, upload, ("image", "video"))
        if background_file is not None:
            video_options = replace(video_options, background_file=background_file)
        job = Job(id=job_id, dir=folder, input_path=path, filename=filename,
                  options=video_options, media=media, owner=client_session(request))
        try:
            jobs.submit(job)
        except QueueFullError as exc:
            raise api_error(web.HTTPServiceUnavailable, str(exc), **{"Retry-After": "30"}
                            ) from exc
    except BaseException:
        await jobs.discard(folder)
        raise
    return web.json_response(job.as_json(jobs.queue_position(job)), status=202,
                             headers={"Location": f"/api/jobs/{job.id}"})


def _job(request: web.Request) -> Job:
    jobs = request.app[JOBS_KEY]
    job_id = request.match_info["id"]
    job = jobs.get(job_id)
    if job is None:
        expiry = request.app[SETTINGS_KEY].job_expiry_s
        raise api_error(web.HTTPNotFound, f"unknown job {job_id[:64]!r} (finished jobs are "
                        f"removed after {expiry:g} s, and when deleted)")
    return job


async def list_jobs(request: web.Request) -> web.Response:
    """The jobs of this client's session only: a job's id is its capability, and the list
    must not hand other clients' ids (and file names) to anyone who holds the token."""
    jobs = request.app[JOBS_KEY]
    return web.json_response({"jobs": [j.as_json(jobs.queue_position(j))
                                       for j in jobs.jobs_of(client_session(request))]})


async def job_status(request: web.Request) -> web.Response:
    job = _job(request)
    return web.json_response(job.as_json(request.app[JOBS_KEY].queue_position(job)))


async def job_result(request: web.Request) -> web.StreamResponse:
    job = _job(request)
    if job.state == "failed":
        raise api_error(web.HTTPConflict, f"job {job.id} failed: {job.error}")
    if job.state != "done" or job.result_path is None:
        raise api_error(web.HTTPConflict, f"job {job.id} is {job.state}; its result is not "
                        "ready (poll GET /api/jobs/{id} until state is done)")
    disposition = "inline" if _flag("inline", request.query.get("inline", "0")) \
        else "attachment"
    return web.FileResponse(job.result_path, headers={
        "Content-Type": MEDIA_TYPES.get(job.result_path.suffix, "application/octet-stream"),
        "Content-Disposition": f'{disposition}; filename="{job.download_name}"',
    })


async def delete_job(request: web.Request) -> web.Response:
    job = _job(request)
    was = job.state
    await request.app[JOBS_KEY].delete(job)
    return web.json_response({"id": job.id, "deleted": True, "was": was})


#: OpenAPI path items added by extensions (the live routes): the document lists what is served
OPENAPI_PATHS_KEY = web.AppKey("streammatte.openapi_paths", dict)


async def openapi(request: web.Request) -> web.Response:
    document = openapi_document()
    document["paths"].update(request.app.get(OPENAPI_PATHS_KEY, {}))
    return web.json_response(document)


# -- OpenAPI ----------------------------------------------------------------------------------

def _error_responses(*codes: int) -> dict[str, Any]:
    text = {400: "bad option", 401: "missing or wrong token", 404: "unknown job",
            409: "result not ready, or the job failed", 413: "upload, image or video too large",
            415: "not a supported image or video", 422: "the file is damaged or truncated",
            503: "too many jobs queued"}
    return {str(c): {"description": text[c], "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}} for c in codes}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0 description of the HTTP API."""
    def form(props: dict[str, Any]) -> dict[str, Any]:
        return {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary"}, **props}}}}}

    engine = {"type": "string", "description": "engine name (GET /api/engines); "
              "default: the server's default"}
    refine = {"type": "boolean", "default": False,
              "description": "guided-filter upsampling: the matte's edges follow the picture"}
    mask = {
        "threshold": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
                      "description": "a hard mask: alpha >= threshold is foreground"},
        "shrink": {"type": "integer", "minimum": 0, "default": 0,
                   "description": "erode the mask by this many pixels"},
        "grow": {"type": "integer", "minimum": 0, "default": 0,
                 "description": "dilate the mask by this many pixels (not with shrink)"},
        "feather": {"type": "number", "minimum": 0, "default": 0,
                    "description": "soften the edge over about this many pixels"},
        "despill": {"type": "boolean", "default": False,
                    "description": "remove the old background's colour from soft edges"},
    }
    background = {"type": "string", "default": "auto",
                  "description": "auto, transparent, blur, a colour name or #rrggbb "
                  "(or send a background_file instead)"}

    def background_file(what: str) -> dict[str, Any]:
        return {"type": "string", "format": "binary",
                "description": f"optional: {what} to compose over (fitted to cover the frame)"}
    job_id = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    job_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "streammatte", "version": __version__,
                 "description": "Remove or replace the background of images and videos."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "needed when the server is bound "
                                           "to a non-loopback address"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"],
                          "properties": {"error": {"type": "string"}}},
                "Job": {"type": "object", "required": ["id", "state"], "properties": {
                    "id": {"type": "string"},
                    "state": {"type": "string",
                              "enum": ["queued", "running", "done", "failed", "cancelled"]},
                    "filename": {"type": "string"},
                    "progress": {"type": "number", "nullable": True, "minimum": 0,
                                 "maximum": 1},
                    "frames_done": {"type": "integer"},
                    "frames_total": {"type": "integer", "nullable": True},
                    "fps": {"type": "number"},
                    "eta_s": {"type": "number", "nullable": True},
                    "elapsed_s": {"type": "number", "nullable": True},
                    "queue_position": {"type": "integer", "nullable": True},
                    "error": {"type": "string", "nullable": True},
                    "notes": {"type": "array", "items": {"type": "string"}},
                    "options": {"type": "object"},
                    "media": {"type": "object"},
                    "result_url": {"type": "string", "nullable": True},
                }},
            },
        },
        "security": [{}, {"bearer": []}],
        "paths": {
            "/api/remove": {"post": {
                "summary": "Remove the background of an image",
                "requestBody": form({
                    "engine": engine, "background": background,
                    BACKGROUND_PART: background_file("a picture"),
                    "only_mask": {"type": "boolean", "default": False,
                                  "description": "return the matte alone (greyscale)"},
                    "format": {"type": "string", "enum": list(IMAGE_FORMATS),
                               "default": "png"},
                    "refine": refine, **mask}),
                "responses": {"200": {"description": "the result image", "content": {
                    t: {"schema": {"type": "string", "format": "binary"}}
                    for _, t in IMAGE_FORMATS.values()}},
                    **_error_responses(400, 401, 413, 415, 422)}}},
            "/api/jobs": {
                "post": {
                    "summary": "Start a video job",
                    "requestBody": form({
                        "engine": engine, "background": background,
                        BACKGROUND_PART: background_file("a picture or a clip (looped)"),
                        "format": {"type": "string", "enum": list(VIDEO_FORMATS),
                                   "default": "vp9"},
                        "temporal": {"type": "string", "enum": temporal_modes(),
                                     "default": DEFAULT_FILE_MODE},
                        "refine": refine, **mask}),
                    "responses": {"202": {"description": "queued", "content": job_ref},
                                  **_error_responses(400, 401, 413, 415, 422, 503)}},
                "get": {"summary": "List this client's jobs", "responses": {"200": {
                    "description": "the jobs created with this client's session cookie "
                                   "(streammatte_session, set on its first request), oldest "
                                   "first; GET /api/jobs/{id} reads any job by its id",
                    "content": {
                        "application/json": {"schema": {"type": "object", "properties": {
                            "jobs": {"type": "array", "items": {
                                "$ref": "#/components/schemas/Job"}}}}}}},
                    **_error_responses(401)}},
            },
            "/api/jobs/{id}": {
                "parameters": job_id,
                "get": {"summary": "A job's state and progress",
                        "responses": {"200": {"description": "the job", "content": job_ref},
                                      **_error_responses(401, 404)}},
                "delete": {"summary": "Cancel a job and remove its files",
                           "responses": {"200": {"description": "deleted"},
                                         **_error_responses(401, 404)}}},
            "/api/jobs/{id}/result": {
                "parameters": job_id,
                "get": {"summary": "Download the finished video",
                        "parameters": [{"name": "inline", "in": "query", "required": False,
                                        "schema": {"type": "boolean"}}],
                        "responses": {"200": {"description": "the video", "content": {
                            t: {"schema": {"type": "string", "format": "binary"}}
                            for t in MEDIA_TYPES.values()}},
                            **_error_responses(401, 404, 409)}}},
            "/api/engines": {"get": {"summary": "Engines this server offers", "responses": {
                "200": {"description": "engines and the default"},
                **_error_responses(401)}}},
            "/api/info": {"get": {"summary": "Version, limits and formats", "responses": {
                "200": {"description": "server facts"}, **_error_responses(401)}}},
            "/api/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": {"description": "OpenAPI 3 description"}}}},
        },
    }


# -- wiring -----------------------------------------------------------------------------------

def install(app: web.Application, settings: ServerSettings, *,
            engines: EngineProvider | None = None) -> None:
    """Add the page, the API and the job manager's lifecycle to ``app``."""
    provider = engines or EngineProvider.from_catalog(settings)
    try:
        provider.check(settings.engine)
    except ConfigError as exc:
        raise ConfigError(f"default engine: {exc}") from None
    app[ENGINES_KEY] = provider

    async def start_jobs(app: web.Application) -> None:
        # folders of servers that were killed before they could remove them
        await asyncio.to_thread(sweep_dead_servers)
        jobs_dir = settings.jobs_dir
        if jobs_dir is None:
            jobs_dir = server_temp_dir("jobs")
        manager = JobManager(settings, provider, Path(jobs_dir))
        await manager.start()
        app[JOBS_KEY] = manager

    async def stop_jobs(app: web.Application) -> None:
        manager = app[JOBS_KEY]
        await manager.close()
        if settings.jobs_dir is None:
            await asyncio.to_thread(shutil.rmtree, manager.jobs_dir, ignore_errors=True)

    app.on_startup.append(start_jobs)
    app.on_cleanup.append(stop_jobs)
    add_page(app, "/", index)
    app.router.add_static("/static/", STATIC_DIR, show_index=False, follow_symlinks=False)
    app.router.add_get("/api/info", info)
    app.router.add_get("/api/engines", list_engines)
    app.router.add_post("/api/remove", remove_background)
    app.router.add_post("/api/jobs", create_job)
    app.router.add_get("/api/jobs", list_jobs)
    app.router.add_get("/api/jobs/{id}", job_status)
    app.router.add_delete("/api/jobs/{id}", delete_job)
    app.router.add_get("/api/jobs/{id}/result", job_result)
    app.router.add_get("/api/openapi.json", openapi)

