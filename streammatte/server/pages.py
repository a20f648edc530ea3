"""What the web page needs beyond the one-shot API: kept mattes, poster frames, the API page.

==================================  ================================================================
``POST /api/mattes``                multipart image → the engine runs once; the picture and its
                                    matte are kept (JSON: id, size, engine, time)
``GET /api/mattes/{id}/composite``  the kept matte composed again (background, format, only_mask
                                    in the query): no model run, so a new background is instant
``POST /api/mattes/{id}/composite`` the same over a background picture sent as the raw body
``DELETE /api/mattes/{id}``         forget it and remove its files
``GET /api/jobs/{id}/poster``       a JPEG frame of a job's clip (about 1 s in), for browsers that
                                    cannot play its container (AVI)
``GET /api/docs``                   ``/api/openapi.json`` as a readable page (no script, no CDN)
==================================  ================================================================

A kept matte lives in its own server-named folder under the jobs folder, like an image request,
until it has not been used for ``job_expiry_s`` or until :data:`KEEP_MATTES` newer ones push it
out; the page starts over (runs the model again) when its id is gone.

Clips are not re-composed: that would need every frame's matte kept losslessly and still a full
decode, compose and encode pass, which with the fast engines costs more than the engine
(figures in docs/server.md); a new background for a clip is a new job.
"""

from __future__ import annotations

import asyncio
import html
import json
import shutil
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from aiohttp import web

from ..api import matte_image
from ..compose import Compositor, parse_background, read_image_rgb
from ..errors import ConfigError, StreamMatteError
from ..sources.file import FileSource
from .api import (
    ENGINES_KEY,
    IMAGE_FORMATS,
    JOBS_KEY,
    OPENAPI_PATHS_KEY,
    _bad_option,
    _encode_image,
    _image_config,
    _job,
    _known,
    _probe,
    _read_upload,
    openapi_document,
)
from .settings import (
    EXTENSIONS_KEY,
    SETTINGS_KEY,
    ServerSettings,
    add_page,
    api_error,
    save_upload,
    too_large,
)

#: kept mattes at most; the least recently used one goes first
KEEP_MATTES = 16
#: the poster frame is taken this far into the clip (or at a tenth of a shorter one)
POSTER_AT_S = 1.0
_POSTER_MAX_FRAMES = 120
_POSTER_MAX_WIDTH = 1280
MATTE_OPTIONS = ("engine", "refine")
COMPOSITE_OPTIONS = ("background", "format", "only_mask")


@dataclass(slots=True)
class KeptMatte:
    """One picture and the matte the engine made of it, on disk."""

    id: str
    dir: Path
    image_path: Path
    matte_path: Path
    #: the client's file name (for download names; never a path)
    filename: str
    width: int
    height: int
    engine: str
    #: what ran it: "u2netp on cpu (onnxruntime CPUExecutionProvider)"
    engine_detail: str
    device: str
    refine: bool
    elapsed_s: float
    used_s: float

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "filename": self.filename, "width": self.width,
                "height": self.height, "engine": self.engine,
                "engine_detail": self.engine_detail, "device": self.device,
                "refine": self.refine, "elapsed_s": round(self.elapsed_s, 3),
                "composite_url": f"/api/mattes/{self.id}/composite"}


class MatteStore:
    """Kept mattes by id: bounded in number, forgotten when unused for ``expiry_s``.

    Only the event loop touches it; removing folders is left to the caller (off the loop)."""

    def __init__(self, keep: int, expiry_s: float) -> None:
        self.keep = keep
        self.expiry_s = expiry_s
        self._kept: OrderedDict[str, KeptMatte] = OrderedDict()

    def add(self, kept: KeptMatte) -> list[KeptMatte]:
        """Keep ``kept``; the ones it pushes out (oldest first)."""
        self._kept[kept.id] = kept
        gone = self.expired(kept.used_s)
        while len(self._kept) > self.keep:
            gone.append(self._kept.popitem(last=False)[1])
        return gone

    def get(self, matte_id: str, now_s: float) -> KeptMatte | None:
        kept = self._kept.get(matte_id)
        if kept is None or now_s - kept.used_s >= self.expiry_s:
            return None
        kept.used_s = now_s
        self._kept.move_to_end(matte_id)
        return kept

    def pop(self, matte_id: str) -> KeptMatte | None:
        return self._kept.pop(matte_id, None)

    def expired(self, now_s: float) -> list[KeptMatte]:
        """Forget the mattes unused for ``expiry_s``; them."""
        gone = [k for k in self._kept.values() if now_s - k.used_s >= self.expiry_s]
        for kept in gone:
            del self._kept[kept.id]
        return gone

    def all(self) -> list[KeptMatte]:
        return list(self._kept.values())


MATTES_KEY = web.AppKey("streammatte.mattes", MatteStore)


async def _forget(request: web.Request, kept: list[KeptMatte]) -> None:
    """Remove the folders of mattes the store no longer holds."""
    for k in kept:
        await request.app[JOBS_KEY].discard(k.dir)


async def _kept(request: web.Request) -> KeptMatte:
    matte_id = request.match_info["id"]
    store, now = request.app[MATTES_KEY], time.time()
    await _forget(request, store.expired(now))
    kept = store.get(matte_id, now)
    if kept is None:
        expiry = request.app[SETTINGS_KEY].job_expiry_s
        raise api_error(web.HTTPNotFound, f"unknown matte {matte_id[:64]!r} (mattes are kept "
                        f"for {expiry:g} s after their last use, {KEEP_MATTES} at most; send "
                        "the picture to POST /api/mattes again)")
    return kept


# -- kept mattes --------------------------------------------------------------------------------

async def create_matte(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    jobs, provider, store = request.app[JOBS_KEY], request.app[ENGINES_KEY], \
        request.app[MATTES_KEY]
    matte_id, folder = jobs.new_dir(image=True)
    try:
        upload = await _read_upload(request, folder)
        try:
            _known(upload.options, MATTE_OPTIONS)
            config, _ = _image_config(upload.options, provider, settings)
        except ConfigError as exc:
            raise _bad_option(exc) from exc
        media = await _probe(request, upload.path, upload.filename, "image")
        matte_config = replace(config, output_format="matte", background="auto")
        matte_path = folder / "matte.png"

        def work() -> tuple[str, str]:
            with provider.acquire(config.engine) as engine:
                matte = matte_image(upload.path, None, matte_config, engine=engine)
                if not cv2.imwrite(str(matte_path), matte):  # pragma: no cover - disk full
                    raise OSError(f"cannot write the matte to {matte_path.name}")
                return engine.describe(), engine.device

        started = time.perf_counter()
        try:
            detail, device = await jobs.run_image(work)
        except StreamMatteError as exc:
            message = str(exc).replace(str(upload.path), upload.filename)
            raise api_error(web.HTTPBadRequest if isinstance(exc, ConfigError)
                            else web.HTTPUnprocessableEntity, message) from exc
        kept = KeptMatte(
            id=matte_id, dir=folder, image_path=upload.path, matte_path=matte_path,
            filename=upload.filename, width=media.width, height=media.height,
            engine=config.engine, engine_detail=detail, device=device,
            refine=config.upsample == "guided", elapsed_s=time.perf_counter() - started,
            used_s=time.time())
    except BaseException:
        await jobs.discard(folder)
        raise
    await _forget(request, store.add(kept))
    return web.json_response(kept.as_json(), status=201,
                             headers={"Location": f"/api/mattes/{kept.id}"})


async def matte_info(request: web.Request) -> web.Response:
    return web.json_response((await _kept(request)).as_json())


async def delete_matte(request: web.Request) -> web.Response:
    kept = await _kept(request)
    request.app[MATTES_KEY].pop(kept.id)
    await _forget(request, [kept])
    return web.json_response({"id": kept.id, "deleted": True})


def compose_kept(kept: KeptMatte, background: str, only_mask: bool, fmt: str) -> bytes:
    """The kept picture over ``background`` through its kept matte, encoded as ``fmt``: what
    ``POST /api/remove`` gives with the same options (the matte is the same 8-bit one), without
    running the engine."""
    image = read_image_rgb(kept.image_path)
    matte = cv2.imread(str(kept.matte_path), cv2.IMREAD_GRAYSCALE)
    if matte is None or matte.shape != image.shape[:2]:
        raise StreamMatteError(f"the kept matte of {kept.filename} is unreadable; send the "
                               "picture again")
    compositor = Compositor(parse_background("transparent" if background == "auto"
                                             else background),
                            "matte" if only_mask else "rgba")
    try:
        out = compositor(image, matte.astype(np.float32) / 255.0)
    finally:
        compositor.close()
    return _encode_image(out, fmt)


async def composite(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    jobs, provider = request.app[JOBS_KEY], request.app[ENGINES_KEY]
    kept = await _kept(request)
    options = {k: v for k, v in request.query.items() if k != "token"}
    try:
        _known(options, COMPOSITE_OPTIONS)
        config, fmt = _image_config({**options, "engine": kept.engine}, provider, settings)
    except ConfigError as exc:
        raise _bad_option(exc) from exc
    background = config.background
    picture: Path | None = None
    if request.method == "POST":
        if "background" in options:
            raise api_error(web.HTTPBadRequest, "send either 'background' or a picture as "
                            "the body, not both")
        saved = kept.dir / f"background-{time.monotonic_ns()}"
        try:
            await _save_body(request, saved, settings)
            info = await _probe(request, saved, "the background picture", ("image",))
        except BaseException:
            saved.unlink(missing_ok=True)
            raise
        # compose tells a picture from a clip by its suffix
        picture = saved.rename(saved.with_suffix("." + info.format))
        background = str(picture)
    try:
        body = await jobs.run_image(lambda: compose_kept(
            kept, background, config.output_format == "matte", fmt))
    finally:
        if picture is not None:
            await jobs.run_blocking(picture.unlink)
    extension, media_type = IMAGE_FORMATS[fmt]
    stem = Path(kept.filename).stem
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in stem)[:80] or "image"
    return web.Response(body=body, content_type=media_type, headers={
        "Content-Disposition": f'inline; filename="{safe}-nobg{extension}"',
        # the kept matte never changes: the same options give the same bytes
        "Cache-Control": "private, max-age=3600" if picture is None else "no-store",
    })


async def _save_body(request: web.Request, target: Path, settings: ServerSettings) -> None:
    cap, what = settings.max_upload_bytes, "the background picture"
    if request.content_length is not None and request.content_length > cap:
        raise too_large(request.content_length, cap, what=what)
    if await save_upload(request.content.read, target, cap, what=what) == 0:
        raise api_error(web.HTTPBadRequest, "POST a background picture as the request body "
                        "(or GET with ?background=… for a colour or blur)")


# -- poster frames ------------------------------------------------------------------------------

def write_poster(video: Path, target: Path) -> None:
    """A JPEG of ``video``'s frame at :data:`POSTER_AT_S` (a tenth of a shorter clip; the
    last frame read when the clip ends first), at most 1280 px wide, written atomically."""
    chosen: np.ndarray | None = None
    with FileSource(video) as source:
        at_s = min(POSTER_AT_S, (source.duration_s or 0.0) / 10)
        rate = source.frame_rate or 25.0
        for packet in source:
            chosen = packet.image
            if packet.index / rate >= at_s or packet.index >= _POSTER_MAX_FRAMES:
                break
    if chosen is None:
        raise StreamMatteError("the clip has no frame to show")
    height, width = chosen.shape[:2]
    if width > _POSTER_MAX_WIDTH:
        chosen = cv2.resize(chosen, (_POSTER_MAX_WIDTH, round(height * _POSTER_MAX_WIDTH / width)),
                            interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(chosen, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:  # pragma: no cover - OpenCV encodes every RGB frame
        raise StreamMatteError("cannot encode the poster frame")
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(encoded.tobytes())
    partial.replace(target)


async def poster(request: web.Request) -> web.StreamResponse:
    job = _job(request)
    target = job.dir / "poster.jpg"
    if not target.exists():
        try:
            await request.app[JOBS_KEY].run_blocking(lambda: write_poster(job.input_path,
                                                                          target))
        except FileNotFoundError:
            raise api_error(web.HTTPNotFound, f"job {job.id} was removed") from None
        except StreamMatteError as exc:
            message = str(exc).replace(str(job.input_path), job.filename)
            raise api_error(web.HTTPUnprocessableEntity, message) from exc
    return web.FileResponse(target, headers={"Content-Type": "image/jpeg",
                                             "Cache-Control": "private, max-age=3600"})


# -- the API page -------------------------------------------------------------------------------

def full_openapi(app: web.Application) -> dict[str, Any]:
    """The document ``GET /api/openapi.json`` serves: the core API and the extensions'."""
    document = openapi_document()
    document["paths"].update(app.get(OPENAPI_PATHS_KEY, {}))
    return document


_METHODS = ("get", "post", "put", "patch", "delete")
#: where a curl example saves an answer of this type
_SAVE_AS = {"image/png": "result.png", "image/jpeg": "frame.jpg", "image/webp": "result.webp",
            "video/mp4": "result.mp4", "video/webm": "result.webm",
            "video/quicktime": "result.mov", "application/zip": "frames.zip"}


def _type_of(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[1]
    kind = str(schema.get("type", "object"))
    if schema.get("format") == "binary":
        return "file"
    if kind == "array":
        return f"list of {_type_of(schema.get('items', {}))}"
    return kind


def _describe(schema: dict[str, Any]) -> str:
    parts = []
    if schema.get("description"):
        parts.append(html.escape(str(schema["description"])))
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"<code>{html.escape(str(v))}</code>"
                                           for v in schema["enum"]))
    if "default" in schema:
        parts.append(f"default <code>{html.escape(json.dumps(schema['default']))}</code>")
    return "; ".join(parts)


def _fields(operation: dict[str, Any], item: dict[str, Any]) -> list[tuple[str, str, str, bool,
                                                                         str]]:
    """(name, where, type, required, description) of every parameter and body field."""
    rows = []
    for param in [*item.get("parameters", []), *operation.get("parameters", [])]:
        schema = param.get("schema", {})
        rows.append((param["name"], param.get("in", "query"), _type_of(schema),
                     bool(param.get("required")), _describe({**schema, **(
                         {"description": param["description"]} if "description" in param
                         else {})})))
    body = operation.get("requestBody", {}).get("content", {})
    for media_type, content in body.items():
        schema = content.get("schema", {})
        where = "form" if media_type == "multipart/form-data" else "JSON" \
            if media_type == "application/json" else "body"
        if schema.get("type") == "object" and "properties" in schema:
            required = set(schema.get("required", []))
            for name, prop in schema["properties"].items():
                rows.append((name, where, _type_of(prop), name in required, _describe(prop)))
        else:
            rows.append(("(body)", media_type, _type_of(schema), True, _describe(schema)))
    return rows


def _example_value(name: str, schema: dict[str, Any], summary: str) -> str:
    if schema.get("format") == "binary":
        return "@clip.mp4" if "video" in summary.lower() else "@photo.jpg"
    if "enum" in schema:
        return str(schema["enum"][0])
    if "default" in schema:
        value = schema["default"]
        return json.dumps(value) if isinstance(value, bool) else str(value)
    return {"engine": "u2netp", "background": "blur"}.get(name, "…")


def curl_example(base: str, path: str, method: str, operation: dict[str, Any],
                 token: bool) -> str:
    """A curl command line that calls ``method path`` with its required fields filled in."""
    summary = str(operation.get("summary", ""))
    url = base + path.replace("{id}", "$ID")
    parts = ["curl"]
    if method != "get":
        parts.append(f"-X {method.upper()}" if method != "post" else "")
    if token:
        parts.append('-H "Authorization: Bearer $STREAMMATTE_TOKEN"')
    body = operation.get("requestBody", {}).get("content", {})
    if "multipart/form-data" in body:
        schema = body["multipart/form-data"]["schema"]
        for name in schema.get("required", []):
            prop = schema["properties"][name]
            parts.append(f"-F {name}={_example_value(name, prop, summary)}")
    elif "application/json" in body:
        schema = body["application/json"]["schema"]
        example = {n: _example_value(n, schema["properties"][n], summary)
                   for n in schema.get("required", [])}
        parts.append("-H 'Content-Type: application/json'")
        parts.append(f"-d '{json.dumps(example)}'")
    elif body:
        parts.append("--data-binary @background.jpg")
    parts.append(f"'{url}'" if "$" not in url else f'"{url}"')
    saved = [_SAVE_AS[media] for response in operation.get("responses", {}).values()
             for media in response.get("content", {}) if media in _SAVE_AS]
    if saved:
        parts.append(f"-o {saved[0]}")
    return " ".join(p for p in parts if p)


def render_docs(document: dict[str, Any], base: str, token: bool, live_page: bool) -> str:
    """``document`` (OpenAPI 3) as one self-contained HTML page; ``live_page``: link /live."""
    esc = html.escape
    operations = [(path, method, item[method]) for path, item in document["paths"].items()
                  for method in _METHODS if method in item]
    toc, sections = [], []
    for path, method, operation in operations:
        anchor = f"{method}-{path.strip('/').replace('/', '-').replace('{', '').replace('}', '')}"
        toc.append(f'<li><a href="#{anchor}"><span class="method {method}">{method.upper()}'
                   f'</span> <code>{esc(path)}</code></a> '
                   f'<span>{esc(operation.get("summary", ""))}</span></li>')
        rows = _fields(operation, document["paths"][path])
        table = ""
        if rows:
            table = ('<table><thead><tr><th scope="col">name</th><th scope="col">in</th>'
                     '<th scope="col">type</th><th scope="col">about</th></tr></thead><tbody>'
                     + "".join(f'<tr><td><code>{esc(n)}</code>{" <em>required</em>" if r else ""}'
                               f'</td><td>{esc(w)}</td><td>{esc(t)}</td><td>{d}</td></tr>'
                               for n, w, t, r, d in rows) + "</tbody></table>")
        responses = "".join(
            f'<li><code>{esc(code)}</code> {esc(str(answer.get("description", "")))}'
            + (f' <span class="muted">({esc(", ".join(answer["content"]))})</span>'
               if answer.get("content") else "") + "</li>"
            for code, answer in operation.get("responses", {}).items())
        example = curl_example(base, path, method, operation, token)
        sections.append(
            f'<section class="operation" id="{anchor}"><h2><span class="method {method}">'
            f'{method.upper()}</span> <code>{esc(path)}</code></h2>'
            f'<p>{esc(operation.get("summary", ""))}</p>{table}'
            f'<h3>Answers</h3><ul class="responses">{responses}</ul>'
            f'<h3>Example</h3><pre><code>{esc(example)}</code></pre></section>')
    info = document.get("info", {})
    auth = ("<p>This server needs its token on every request: send "
            "<code>Authorization: Bearer &lt;token&gt;</code> (the examples read it from "
            "<code>$STREAMMATTE_TOKEN</code>).</p>" if token else
            "<p>This server listens on loopback: no token is needed.</p>")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>streammatte HTTP API</title>
<link rel="stylesheet" href="/static/app.css">
</head>
<body class="docs">
<header class="site">
  <p class="brand"><a href="/">streammatte</a></p>
  <nav aria-label="Pages">
    <a href="/">Pictures &amp; clips</a>
    {'<a href="/live">Live camera</a>' if live_page else ""}
    <a href="/api/docs" aria-current="page">HTTP API</a>
  </nav>
</header>
<main>
<h1>HTTP API</h1>
<p class="lead">{esc(str(info.get("description", "")))} Version {esc(str(info.get("version", "")))}.
Answers that are not a picture or a video are JSON; errors are <code>{{"error": "…"}}</code>
with a status that says what went wrong. The machine-readable description is
<a href="/api/openapi.json">/api/openapi.json</a> (OpenAPI {esc(str(document.get("openapi", "")))});
this page is made from it.</p>
{auth}
<nav aria-label="Routes"><ul class="toc">{"".join(toc)}</ul></nav>
{"".join(sections)}
</main>
</body>
</html>
"""


async def api_docs(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    base = f"{request.scheme}://{request.host}"
    live = request.app.get(EXTENSIONS_KEY, {}).get("streammatte.server.live") == "installed"
    return web.Response(text=render_docs(full_openapi(request.app), base,
                                         settings.token_required, live),
                        content_type="text/html", headers={"Cache-Control": "no-store"})


# -- OpenAPI and wiring -------------------------------------------------------------------------

def openapi_paths() -> dict[str, Any]:
    """OpenAPI 3.0 path items of the routes above (merged into /api/openapi.json)."""
    def error(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}}

    matte_id = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    images = {t: {"schema": {"type": "string", "format": "binary"}}
              for _, t in IMAGE_FORMATS.values()}
    composite_query = [
        {"name": "background", "in": "query", "required": False,
         "schema": {"type": "string", "default": "auto", "description":
                    "auto, transparent, blur, a colour name or #rrggbb"}},
        {"name": "format", "in": "query", "required": False,
         "schema": {"type": "string", "enum": list(IMAGE_FORMATS), "default": "png"}},
        {"name": "only_mask", "in": "query", "required": False,
         "schema": {"type": "boolean", "default": False,
                    "description": "the matte alone (greyscale)"}}]
    composed = {"200": {"description": "the composed image", "content": images},
                "400": error("bad option"), "401": error("missing or wrong token"),
                "404": error("unknown or expired matte")}
    return {
        "/api/mattes": {"post": {
            "summary": "Run the engine on an image once and keep its matte, to compose it "
                       "again without the model",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"], "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "engine": {"type": "string", "description": "engine name (GET "
                               "/api/engines); default: the server's default"},
                    "refine": {"type": "boolean", "default": False, "description":
                               "guided-filter upsampling: the matte's edges follow the "
                               "picture"}}}}}},
            "responses": {
                "201": {"description": "kept: id, size, engine, seconds, composite_url",
                        "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": error("bad option"), "401": error("missing or wrong token"),
                "413": error("upload or image too large"),
                "415": error("not a supported image"),
                "422": error("the file is damaged or truncated")}}},
        "/api/mattes/{id}": {
            "parameters": matte_id,
            "get": {"summary": "A kept matte's facts", "responses": {
                "200": {"description": "id, size, engine, seconds, composite_url"},
                "401": error("missing or wrong token"),
                "404": error("unknown or expired matte")}},
            "delete": {"summary": "Forget a kept matte and remove its files", "responses": {
                "200": {"description": "deleted"}, "401": error("missing or wrong token"),
                "404": error("unknown or expired matte")}}},
        "/api/mattes/{id}/composite": {
            "parameters": matte_id,
            "get": {"summary": "Compose the kept matte's image again (no model run)",
                    "parameters": composite_query, "responses": composed},
            "post": {"summary": "Compose the kept matte's image over a background picture "
                                "sent as the body (no model run)",
                     "parameters": composite_query[1:],
                     "requestBody": {"required": True, "content": {
                         "application/octet-stream": {"schema": {"type": "string",
                                                                 "format": "binary"}}}},
                     "responses": {**composed, "413": error("the picture is too large"),
                                   "415": error("not a supported image")}}},
        "/api/jobs/{id}/poster": {
            "parameters": [{"name": "id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "get": {"summary": "A JPEG frame of the job's clip, about 1 s in (for browsers "
                               "that cannot play its container)",
                    "responses": {"200": {"description": "the frame", "content": {
                        "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
                        "401": error("missing or wrong token"), "404": error("unknown job"),
                        "422": error("the clip has no readable frame")}}},
        "/api/docs": {"get": {"summary": "This API as a readable page (HTML)", "responses": {
            "200": {"description": "the page", "content": {"text/html": {}}}}}},
    }


def install(app: web.Application, settings: ServerSettings) -> None:
    """Add the routes above to ``app`` (after :func:`streammatte.server.api.install`)."""
    app[MATTES_KEY] = MatteStore(KEEP_MATTES, settings.job_expiry_s)

    async def forget_all(app: web.Application) -> None:
        # the store lives in memory: after a restart its folders could never be used again
        for kept in app[MATTES_KEY].all():
            await asyncio.to_thread(shutil.rmtree, kept.dir, ignore_errors=True)

    app.on_cleanup.append(forget_all)
    app.router.add_post("/api/mattes", create_matte)
    app.router.add_get("/api/mattes/{id}", matte_info)
    app.router.add_delete("/api/mattes/{id}", delete_matte)
    app.router.add_get("/api/mattes/{id}/composite", composite)
    app.router.add_post("/api/mattes/{id}/composite", composite)
    app.router.add_get("/api/jobs/{id}/poster", poster)
    add_page(app, "/api/docs", api_docs)
    app.setdefault(OPENAPI_PATHS_KEY, {}).update(openapi_paths())
