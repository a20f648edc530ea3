"""The HTTP API of ``streammatte serve``, through aiohttp's test client (pytest-aiohttp).

Most tests use the BrightnessEngine test double (alpha = brightness > 0.5), so results are
exact; one test runs the real u2netp against rembg's golden matte.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from aiohttp import DummyCookieJar, FormData, web
from aiohttp.test_utils import TestClient, TestServer
from media import BrightnessEngine, make_video
from pytest_aiohttp.plugin import AiohttpClient

from streammatte.errors import ConfigError, SourceError
from streammatte.inference.base import Engine
from streammatte.inference.mog2 import Mog2Engine
from streammatte.server import ServerSettings, create_app, pages
from streammatte.server.api import JOBS_KEY, openapi_document
from streammatte.server.jobs import EngineInfo, EngineProvider
from streammatte.server.probe import ProbeError, probe
from streammatte.server.settings import EXTENSIONS_KEY, SESSION_COOKIE, TOKEN_COOKIE

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


class FailingEngine(BrightnessEngine):
    """Fails on its third frame, like a model that hits a bad input mid-video."""

    name = "failing"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.calls >= 2:
            raise SourceError("the engine gave up on frame 3")
        return super().infer(batch)


class Engines:
    """Opens test engines by name and remembers them, so tests can look inside."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.opened: list[Engine] = []

    def open(self, name: str) -> Engine:
        engine: Engine
        if name == "mog2":
            engine = Mog2Engine()
        elif name == "failing":
            engine = FailingEngine()
        else:
            engine = BrightnessEngine(delay_s=self.delay_s)
        self.opened.append(engine)
        return engine

    def provider(self) -> EngineProvider:
        return EngineProvider([
            EngineInfo("brightness", "test double", "model"),
            EngineInfo("failing", "fails on frame 3", "model"),
            EngineInfo("mog2", "MOG2", "builtin", video_only=True),
        ], self.open)


@pytest.fixture
def make_client(aiohttp_client: AiohttpClient, tmp_path: Path) -> MakeClient:
    async def make(engines: Engines | None = None, **settings: Any) -> Client:
        settings.setdefault("jobs_dir", tmp_path / "jobs")
        settings.setdefault("engine", "brightness")
        settings.setdefault("extensions", ())
        app = create_app(ServerSettings(**settings),
                         engines=(engines or Engines()).provider())
        return await aiohttp_client(app)

    return make


def square_png(size: tuple[int, int] = (64, 48), ext: str = ".png") -> tuple[bytes, np.ndarray]:
    """A bright square on a dark background, encoded; and where the square is (bool mask)."""
    w, h = size
    image = np.full((h, w, 3), 30, np.uint8)
    mask = np.zeros((h, w), bool)
    mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = True
    image[mask] = 220
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes(), mask


def form(data: bytes, filename: str, **fields: str) -> FormData:
    body = FormData()
    for name, value in fields.items():
        body.add_field(name, value)
    body.add_field("file", data, filename=filename, content_type="application/octet-stream")
    return body


async def error_of(response: Any, status: int) -> str:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    message: str = (await response.json())["error"]
    return message


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    return np.asarray(image)


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    make_video(path, frames=12, size=(64, 48))
    return path


async def wait_for(client: TestClient[Any, Any], job_id: str, states: tuple[str, ...],
                   timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get(f"/api/jobs/{job_id}")
        assert response.status == 200
        job: dict[str, Any] = await response.json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"job stuck in {job['state']}"
        await asyncio.sleep(0.05)


# -- page, info, engines, OpenAPI ---------------------------------------------------------------

@pytest.mark.asyncio
async def test_page_and_its_assets_are_served_locally(make_client: MakeClient) -> None:
    client = await make_client()
    page = await client.get("/")
    assert page.status == 200
    html = await page.text()
    assert 'src="/static/app.js"' in html and 'href="/static/app.css"' in html
    assert "http://" not in html and "https://" not in html  # no CDN
    for asset, needle in (("app.js", "/api/mattes"), ("common.js", "Authorization"),
                          ("app.css", "conic-gradient")):
        response = await client.get(f"/static/{asset}")
        assert response.status == 200 and needle in await response.text()
    assert (await client.get("/static/../app.py")).status in (403, 404)


@pytest.mark.asyncio
async def test_info_reports_limits_and_formats(make_client: MakeClient) -> None:
    client = await make_client(max_upload_bytes=12345, max_video_duration_s=7)
    info = await (await client.get("/api/info")).json()
    assert info["limits"]["max_upload_bytes"] == 12345
    assert info["limits"]["max_video_duration_s"] == 7
    assert [f["name"] for f in info["video_formats"]] == [
        "vp9", "h264", "hevc", "prores4444", "png", "matte"]
    assert info["image_formats"] == ["png", "webp", "jpeg"]


@pytest.mark.asyncio
async def test_engines_lists_the_providers_engines(make_client: MakeClient) -> None:
    client = await make_client()
    body = await (await client.get("/api/engines")).json()
    assert body["default"] == "brightness"
    assert [e["name"] for e in body["engines"]] == ["brightness", "failing", "mog2"]
    assert [e["video_only"] for e in body["engines"]] == [False, False, True]


@pytest.mark.asyncio
@pytest.mark.parametrize("extensions", [(), ("streammatte.server.live",)])
async def test_openapi_documents_exactly_the_routes(make_client: MakeClient,
                                                    extensions: tuple[str, ...]) -> None:
    if extensions:
        pytest.importorskip("aiortc", reason="the live routes need the [webrtc] extra")
    client = await make_client(extensions=extensions)
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    document = await response.json()
    if not extensions:
        expected = openapi_document()
        expected["paths"].update(pages.openapi_paths())
        assert document == json.loads(json.dumps(expected))
    assert document["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, item in document["paths"].items()
                  for method in item if method != "parameters"}
    routed = set()
    for route in client.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and path.startswith("/api/") and route.method != "HEAD":
            routed.add((path, route.method))
    assert documented == routed
    for item in document["paths"].values():
        for operation in (v for k, v in item.items() if k != "parameters"):
            for schema in json.dumps(operation).split('"$ref": "')[1:]:
                name = schema.split('"')[0].rsplit("/", 1)[1]
                assert name in document["components"]["schemas"]


# -- images ---------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_remove_returns_a_png_with_the_matte_as_alpha(make_client: MakeClient) -> None:
    client = await make_client()
    data, mask = square_png()
    response = await client.post("/api/remove", data=form(data, "shot.png"))
    assert response.status == 200, await response.text()
    assert response.content_type == "image/png"
    assert 'filename="shot-nobg.png"' in response.headers["Content-Disposition"]
    assert response.headers["X-Streammatte-Engine"].startswith("brightness")
    out = decode(await response.read())
    assert out.shape == (48, 64, 4)
    np.testing.assert_array_equal(out[..., 3], np.where(mask, 255, 0))
    assert out[mask][:, :3].min() >= 200  # the square keeps its own colour


@pytest.mark.asyncio
async def test_remove_accepts_jpeg_and_webp_by_content(make_client: MakeClient) -> None:
    client = await make_client()
    for ext in (".jpg", ".webp"):
        data, mask = square_png(ext=ext)
        # the name lies on purpose: the type is decided from the bytes
        response = await client.post("/api/remove", data=form(data, "picture.gif"))
        assert response.status == 200, await response.text()
        alpha = decode(await response.read())[..., 3]
        assert (alpha[mask] == 255).mean() > 0.95 and (alpha[~mask] == 0).mean() > 0.95


@pytest.mark.asyncio
async def test_remove_takes_the_mask_controls(make_client: MakeClient) -> None:
    client = await make_client()
    data, mask = square_png()
    response = await client.post("/api/remove", data=form(data, "a.png", only_mask="true",
                                                          shrink="2"))
    matte = decode(await response.read())
    assert 0 < (matte > 127).sum() < mask.sum()  # the square, 2 pixels smaller all round
    message = await error_of(await client.post("/api/remove", data=form(
        data, "a.png", shrink="2", grow="1")), 400)
    assert "choose shrink or grow, not both" in message
    message = await error_of(await client.post("/api/remove", data=form(
        data, "a.png", feather="wide")), 400)
    assert "feather should be a number, got 'wide'" in message


@pytest.mark.asyncio
async def test_remove_with_a_colour_background_only_mask_and_jpeg(
        make_client: MakeClient) -> None:
    client = await make_client()
    data, mask = square_png()
    response = await client.post("/api/remove", data=form(data, "a.png", background="#ff0000"))
    out = decode(await response.read())
    assert (out[..., 3] == 255).all()
    np.testing.assert_array_equal(out[~mask][:, :3], np.tile([0, 0, 255], ((~mask).sum(), 1)))

    response = await client.post("/api/remove", data=form(data, "a.png", only_mask="true"))
    matte = decode(await response.read())
    assert matte.ndim == 2
    np.testing.assert_array_equal(matte, np.where(mask, 255, 0))

    response = await client.post("/api/remove", data=form(data, "a.png", format="jpeg"))
    assert response.content_type == "image/jpeg"
    out = decode(await response.read())
    assert out.shape == (48, 64, 3) and out[~mask].mean() > 240  # white where it was dark


def with_background(body: FormData, data: bytes, filename: str) -> FormData:
    body.add_field("background_file", data, filename=filename,
                   content_type="application/octet-stream")
    return body


def gradient_png(size: tuple[int, int] = (64, 48)) -> tuple[bytes, np.ndarray]:
    """A left-to-right RGB gradient (BGR-encoded PNG), and its pixels as RGB."""
    w, h = size
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    rgb[..., 2] = 200
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes(), rgb


@pytest.mark.asyncio
async def test_remove_composes_over_an_uploaded_background_picture(
        make_client: MakeClient) -> None:
    client = await make_client()
    data, mask = square_png()
    backdrop, backdrop_rgb = gradient_png()
    response = await client.post("/api/remove", data=with_background(
        form(data, "a.png"), backdrop, "beach.png"))
    assert response.status == 200, await response.text()
    out = decode(await response.read())
    assert (out[..., 3] == 255).all()
    rgb = cv2.cvtColor(out[..., :3], cv2.COLOR_BGR2RGB)
    # where the matte is 0 the uploaded picture shows, pixel for pixel (same size: no resize)
    np.testing.assert_array_equal(rgb[~mask], backdrop_rgb[~mask])
    assert (rgb[mask] == 220).all()  # the subject is kept

    # a background option and a background file at once: ambiguous
    message = await error_of(await client.post("/api/remove", data=with_background(
        form(data, "a.png", background="blur"), backdrop, "beach.png")), 400)
    assert message == "send either 'background' or 'background_file', not both"
    # not a picture
    message = await error_of(await client.post("/api/remove", data=with_background(
        form(data, "a.png"), b"%PDF-1.4 not a picture", "beach.png")), 415)
    assert message.startswith("beach.png: ")


@pytest.mark.asyncio
async def test_video_job_composes_over_an_uploaded_background_clip(
        make_client: MakeClient, video: Path, tmp_path: Path) -> None:
    client = await make_client()
    backdrop = tmp_path / "backdrop.mp4"
    with av.open(str(backdrop), "w") as container:  # 5 flat frames, each its own colour
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(5):
            flat = np.zeros((48, 64, 3), np.uint8)
            flat[:] = (40 * k + 20, 200, 100)
            for packet in stream.encode(av.VideoFrame.from_ndarray(flat, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    response = await client.post("/api/jobs", data=with_background(form(
        video.read_bytes(), "clip.mp4", format="h264", temporal="none"),
        backdrop.read_bytes(), "waves.mp4"))
    assert response.status == 202, await response.text()
    job = await wait_for(client, (await response.json())["id"], ("done", "failed"))
    assert job["state"] == "done", job["error"]
    assert job["options"]["background"] == "uploaded file"  # no server path is shown
    out = tmp_path / "out.mp4"
    out.write_bytes(await (await client.get(job["result_url"] + "?inline=1")).read())
    with av.open(str(out)) as container:
        got = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(backdrop)) as container:
        want = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(got) == 12
    # a dark corner of the clip (matte 0) shows the background clip, looped: frame 7 → 2
    for i in (0, 3, 7):
        diff = np.abs(got[i][:6, :6].astype(int) - want[i % 5][:6, :6].astype(int))
        assert diff.mean() < 8, i


@pytest.mark.parametrize(("fields", "message"), [
    ({"engine": "nope"}, r"unknown engine 'nope' \(choose from: brightness, failing, mog2\)"),
    ({"engine": "mog2"}, r"engine mog2 needs a video"),
    ({"colour": "red"}, r"unknown option\(s\) \['colour'\]"),
    ({"background": "/etc/passwd"}, r"background '/etc/passwd': expected auto, transparent"),
    ({"background": "#12345"}, r"expected a colour like #00ff00"),
    ({"only_mask": "maybe"}, r"only_mask should be true or false, got 'maybe'"),
    ({"format": "gif"}, r"unknown format 'gif' \(choose from: png, webp, jpeg\)"),
    ({"format": "jpeg", "background": "transparent"}, r"JPEG has no alpha channel"),
])
@pytest.mark.asyncio
async def test_remove_refuses_bad_options(make_client: MakeClient, fields: dict[str, str],
                                          message: str) -> None:
    client = await make_client()
    data, _ = square_png()
    response = await client.post("/api/remove", data=form(data, "a.png", **fields))
    assert re.search(message, await error_of(response, 400))


@pytest.mark.asyncio
async def test_remove_refuses_what_is_not_an_image(make_client: MakeClient,
                                                   video: Path) -> None:
    client = await make_client()
    response = await client.post("/api/remove", data=form(b"hello, world\n" * 10, "a.png"))
    assert await error_of(response, 415) == (
        "a.png: not a supported image (JPEG, PNG or WebP) or video (MP4, MOV, WebM, MKV or AVI)")
    response = await client.post("/api/remove", data=form(video.read_bytes(), "clip.mp4"))
    assert await error_of(response, 415) == (
        "clip.mp4: this is a video (mov); expected JPEG, PNG or WebP here (send videos to "
        "POST /api/jobs)")
    response = await client.post("/api/remove", data=form(b"", "empty.png"))
    assert await error_of(response, 415) == "empty.png: empty file"


@pytest.mark.asyncio
async def test_remove_refuses_a_damaged_image_without_leaking_paths(
        make_client: MakeClient, tmp_path: Path) -> None:
    client = await make_client()
    data, _ = square_png()
    response = await client.post("/api/remove", data=form(data[:60], "cut.png"))
    message = await error_of(response, 422)
    assert message.startswith("cut.png: not a readable image"), message
    assert str(tmp_path) not in message
    assert list((tmp_path / "jobs").iterdir()) == []  # the upload is gone


@pytest.mark.asyncio
async def test_remove_refuses_too_large_uploads_and_images(make_client: MakeClient) -> None:
    data, _ = square_png((400, 300))
    client = await make_client(max_upload_bytes=1000)
    response = await client.post("/api/remove", data=form(data, "big.png"))
    assert re.fullmatch(r"upload is (more than )?\d+ bytes; this server accepts up to 1000 bytes",
                        await error_of(response, 413))
    client = await make_client(max_image_pixels=100_000)
    response = await client.post("/api/remove", data=form(data, "big.png"))
    assert await error_of(response, 413) == (
        "big.png: image is 400×300 (0.1 MP); this server accepts up to 0.1 MP")


@pytest.mark.asyncio
async def test_upload_size_is_capped_while_streaming(make_client: MakeClient,
                                                     tmp_path: Path) -> None:
    client = await make_client(max_upload_bytes=100_000)

    async def chunks() -> Any:
        boundary = "b0undary"
        yield (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
               f'filename="x.png"\r\n\r\n').encode()
        for _ in range(40):
            yield b"\0" * 10_000  # 400 kB with no Content-Length to trust
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await client.post("/api/remove", data=chunks(), headers={
        "Content-Type": "multipart/form-data; boundary=b0undary"})
    assert "this server accepts up to 0.1 MB" in await error_of(response, 413)
    assert list((tmp_path / "jobs").iterdir()) == []


@pytest.mark.asyncio
async def test_remove_needs_a_multipart_file(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.post("/api/remove", json={"file": "x"})
    assert (await error_of(response, 400)).startswith("expected multipart/form-data")
    body = FormData()
    body.add_field("engine", "brightness")
    body.add_field("other", b"x", filename="x.bin")
    response = await client.post("/api/remove", data=body)
    assert (await error_of(response, 400)).startswith("no file in the request")


async def _real_u2netp_client(aiohttp_client: AiohttpClient, tmp_path: Path,
                              u2netp_path: Path) -> Client:
    settings = ServerSettings(jobs_dir=tmp_path / "jobs", extensions=(), engines=("u2netp",),
                              models_dir=u2netp_path.parent, device="cpu")
    client: Client = await aiohttp_client(create_app(settings))
    return client


@pytest.mark.asyncio
async def test_remove_with_real_u2netp_matches_rembgs_golden_matte(
        aiohttp_client: AiohttpClient, tmp_path: Path, shared_data: Path,
        u2netp_path: Path) -> None:
    client = await _real_u2netp_client(aiohttp_client, tmp_path, u2netp_path)
    golden = shared_data / "rembg-golden"
    image = (golden / "anime-girl-1.jpg").read_bytes()
    response = await client.post("/api/remove", data=form(image, "anime-girl-1.jpg"))
    assert response.status == 200, await response.text()
    assert response.headers["X-Streammatte-Engine"].startswith("u2netp on cpu")
    out = decode(await response.read())
    expected = decode((golden / "anime-girl-1.u2netp.png").read_bytes())[..., 3]
    assert out.shape[:2] == expected.shape and out.shape[2] == 4
    diff = np.abs(out[..., 3].astype(np.int16) - expected.astype(np.int16))
    # rembg rescales each matte by its min/max; the server does not (flicker on video), so
    # values differ a little while the cut-out is the same
    assert diff.mean() < 4 and ((out[..., 3] > 127) == (expected > 127)).mean() > 0.98


# -- video jobs -----------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_video_job_runs_to_done_and_serves_the_result(
        make_client: MakeClient, video: Path, tmp_path: Path) -> None:
    client = await make_client()
    response = await client.post("/api/jobs", data=form(video.read_bytes(), "clip.mp4"))
    assert response.status == 202, await response.text()
    job = await response.json()
    assert response.headers["Location"] == f"/api/jobs/{job['id']}"
    assert re.fullmatch(r"[0-9a-f]{32}", job["id"])
    assert job["state"] in ("queued", "running") and job["frames_total"] == 12
    assert job["media"] == {"width": 64, "height": 48, "duration_s": 1.2, "frame_rate": 10.0,
                            "container": "mov"}
    done = await wait_for(client, job["id"], ("done", "failed"))
    assert done["state"] == "done", done["error"]
    assert done["progress"] == 1.0 and done["frames_done"] == 12 and done["fps"] > 0
    assert done["result_url"] == f"/api/jobs/{job['id']}/result"
    result = await client.get(done["result_url"])
    assert result.status == 200 and result.content_type == "video/webm"
    assert result.headers["Content-Disposition"] == 'attachment; filename="clip-nobg.webm"'
    out = tmp_path / "out.webm"
    out.write_bytes(await result.read())
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.metadata.get("alpha_mode") == "1"  # VP9 with alpha
        assert sum(1 for _ in container.decode(stream)) == 12
    # the job's folder holds the upload and the result, named by the server
    assert sorted(p.name for p in (tmp_path / "jobs" / job["id"]).iterdir()) == [
        "result.webm", "upload"]


@pytest.mark.asyncio
async def test_video_job_with_a_colour_background_to_h264(make_client: MakeClient,
                                                          video: Path, tmp_path: Path) -> None:
    client = await make_client()
    response = await client.post("/api/jobs", data=form(
        video.read_bytes(), "clip.mp4", format="h264", background="#0000ff",
        temporal="ema"))
    job = await wait_for(client, (await response.json())["id"], ("done", "failed"))
    assert job["state"] == "done" and job["options"] == {
        "engine": "brightness", "background": "#0000ff", "format": "h264", "temporal": "ema",
        "refine": "false", "threshold": "", "shrink": "0", "grow": "0", "feather": "0",
        "despill": "false"}
    out = tmp_path / "out.mp4"
    out.write_bytes(await (await client.get(job["result_url"] + "?inline=1")).read())
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert frame[2, 2, 2] > 200 and frame[2, 2, 0] < 60  # the dark corner is now blue


@pytest.mark.asyncio
async def test_video_job_to_a_png_sequence_serves_one_zip(make_client: MakeClient,
                                                          video: Path) -> None:
    client = await make_client()
    response = await client.post("/api/jobs", data=form(video.read_bytes(), "clip.mp4",
                                                         format="png", temporal="none"))
    job = await wait_for(client, (await response.json())["id"], ("done", "failed"))
    assert job["state"] == "done", job["error"]
    response = await client.get(job["result_url"])
    assert response.status == 200
    assert response.content_type == "application/zip"
    assert 'filename="clip-nobg.zip"' in response.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(await response.read())) as bundle:
        names = bundle.namelist()
        first = decode(bundle.read(names[0]))
    assert len(names) == 12 and names == sorted(names)
    assert all(n.endswith(".png") for n in names)
    assert first.shape == (48, 64, 4) and (first[..., 3] == 0).any()  # real alpha
    # the folder the frames were written to is gone: only the zip is kept
    kept = client.app[JOBS_KEY].get(job["id"])
    assert kept is not None
    assert sorted(p.name for p in kept.dir.iterdir() if p.name.startswith("result")) == [
        "result.zip"]


@pytest.mark.asyncio
async def test_job_status_and_result_errors(make_client: MakeClient, video: Path) -> None:
    client = await make_client(engines=Engines(delay_s=0.3))
    message = await error_of(await client.get("/api/jobs/0123"), 404)
    assert message.startswith("unknown job '0123' (finished jobs are removed after 3600 s")
    assert (await error_of(await client.delete("/api/jobs/0123"), 404)).startswith("unknown job")
    assert (await error_of(await client.get("/api/jobs/0123/result"), 404)).startswith(
        "unknown job")
    job = await (await client.post("/api/jobs", data=form(video.read_bytes(), "c.mp4"))).json()
    message = await error_of(await client.get(f"/api/jobs/{job['id']}/result"), 409)
    assert re.match(rf"job {job['id']} is (queued|running); its result is not ready", message)
    await client.delete(f"/api/jobs/{job['id']}")


@pytest.mark.parametrize(("fields", "message"), [
    ({"engine": "nope"}, r"^unknown engine 'nope' \(choose from: brightness, failing, mog2\)$"),
    ({"format": "gif"}, r"^unknown format 'gif' \(choose from: vp9, h264, hevc, prores4444, "),
    ({"format": "h264", "background": "transparent"}, r"^format h264 has no alpha channel"),
    ({"temporal": "wobble"}, r"^unknown temporal 'wobble' \(choose from: "),
    ({"background": "~/secret.png"}, r"^background '~/secret.png': expected"),
])
@pytest.mark.asyncio
async def test_jobs_refuse_bad_options(make_client: MakeClient, video: Path,
                                       fields: dict[str, str], message: str,
                                       tmp_path: Path) -> None:
    client = await make_client()
    response = await client.post("/api/jobs", data=form(video.read_bytes(), "c.mp4", **fields))
    assert re.search(message, await error_of(response, 400))
    assert list((tmp_path / "jobs").iterdir()) == []


@pytest.mark.asyncio
async def test_jobs_refuse_images_truncated_and_oversized_videos(
        make_client: MakeClient, video: Path) -> None:
    client = await make_client()
    data, _ = square_png()
    response = await client.post("/api/jobs", data=form(data, "still.png"))
    assert (await error_of(response, 415)).startswith(
        "still.png: this is an image (png); expected MP4, MOV, WebM, MKV or AVI here")
    whole = video.read_bytes()
    response = await client.post("/api/jobs", data=form(whole[: len(whole) // 2], "cut.mp4"))
    assert (await error_of(response, 422)).startswith("cut.mp4: not a readable video (")
    client = await make_client(max_video_duration_s=1.0)
    response = await client.post("/api/jobs", data=form(whole, "long.mp4"))
    assert await error_of(response, 413) == (
        "long.mp4: video is 1.2 s long; this server accepts up to 1 s")
    client = await make_client(max_video_pixels=3000)
    response = await client.post("/api/jobs", data=form(whole, "wide.mp4"))
    assert (await error_of(response, 413)).startswith(
        "wide.mp4: video is 64×48 (0.0 MP per frame); this server accepts up to 0.0 MP")


@pytest.mark.asyncio
async def test_a_job_on_a_clip_cut_short_says_so(make_client: MakeClient,
                                                 tmp_path: Path) -> None:
    whole = tmp_path / "whole.webm"
    make_video(whole, frames=40, codec="libvpx-vp9")
    data = whole.read_bytes()
    client = await make_client()
    job = await (await client.post("/api/jobs", data=form(data[: len(data) * 3 // 4],
                                                          "cut.webm"))).json()
    done = await wait_for(client, job["id"], ("done", "failed"))
    assert done["state"] == "done", done["error"]
    assert 0 < done["frames_done"] < 40
    assert f"cut.webm: input ends early: {done['frames_done']} of 40 frames" in done["notes"]


@pytest.mark.asyncio
async def test_a_failed_job_leaves_a_readable_error_and_no_partial_result(
        make_client: MakeClient, video: Path, tmp_path: Path) -> None:
    client = await make_client()
    response = await client.post("/api/jobs", data=form(video.read_bytes(), "c.mp4",
                                                        engine="failing"))
    job = await wait_for(client, (await response.json())["id"], ("done", "failed"))
    assert job["state"] == "failed"
    assert job["error"] == "the engine gave up on frame 3"
    assert job["result_url"] is None
    message = await error_of(await client.get(f"/api/jobs/{job['id']}/result"), 409)
    assert message == f"job {job['id']} failed: the engine gave up on frame 3"
    assert [p.name for p in (tmp_path / "jobs" / job["id"]).iterdir()] == ["upload"]


@pytest.mark.asyncio
async def test_cancelling_stops_the_pipeline_and_leaves_no_partial_file(
        make_client: MakeClient, tmp_path: Path) -> None:
    long_video = tmp_path / "long.mp4"
    make_video(long_video, frames=120, size=(64, 48))
    engines = Engines(delay_s=0.05)
    client = await make_client(engines=engines)
    job = await (await client.post("/api/jobs", data=form(long_video.read_bytes(),
                                                          "long.mp4"))).json()
    folder = tmp_path / "jobs" / job["id"]

    def partial() -> list[str]:
        return [p.name for p in folder.iterdir() if p.name.startswith(".result.webm.partial")]

    def engine_calls() -> int:
        return engines.opened[0].calls if engines.opened else 0  # type: ignore[attr-defined]

    # cancel mid-run: frames are going through the engine and the sink's staged file is on
    # disk (the sink stages it before the first frame, so wait for the engine too)
    deadline = time.monotonic() + 30
    while not (partial() and engine_calls() >= 2):
        assert time.monotonic() < deadline, sorted(p.name for p in folder.iterdir())
        await asyncio.sleep(0.02)
    # cancel the way DELETE does, but keep the folder to look inside it
    record = client.app[JOBS_KEY].get(job["id"])
    assert record is not None and record.task is not None
    record.cancel_event.set()
    await asyncio.wait_for(record.task, 10)
    assert record.state == "cancelled" and record.result_path is None
    assert [p.name for p in folder.iterdir()] == ["upload"]
    calls = engines.opened[0].calls  # type: ignore[attr-defined]
    assert 2 <= calls < 120  # stopped early, not run to the end
    await asyncio.sleep(0.3)
    assert engines.opened[0].calls == calls  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_delete_cancels_a_running_job_and_removes_its_files(
        make_client: MakeClient, tmp_path: Path) -> None:
    long_video = tmp_path / "long.mp4"
    make_video(long_video, frames=60, size=(64, 48))
    client = await make_client(engines=Engines(delay_s=0.05))
    job = await (await client.post("/api/jobs", data=form(long_video.read_bytes(),
                                                          "long.mp4"))).json()
    await wait_for(client, job["id"], ("running",))
    response = await client.delete(f"/api/jobs/{job['id']}")
    assert response.status == 200
    assert await response.json() == {"id": job["id"], "deleted": True, "was": "running"}
    assert not (tmp_path / "jobs" / job["id"]).exists()
    assert (await error_of(await client.get(f"/api/jobs/{job['id']}"), 404)).startswith(
        "unknown job")


@pytest.mark.asyncio
async def test_jobs_queue_behind_the_concurrency_cap(make_client: MakeClient,
                                                     tmp_path: Path) -> None:
    long_video = tmp_path / "long.mp4"
    make_video(long_video, frames=40, size=(64, 48))
    client = await make_client(engines=Engines(delay_s=0.05), max_concurrent_jobs=1,
                               max_queued_jobs=1)
    data = long_video.read_bytes()
    first = await (await client.post("/api/jobs", data=form(data, "1.mp4"))).json()
    second = await (await client.post("/api/jobs", data=form(data, "2.mp4"))).json()
    assert second["state"] == "queued" and second["queue_position"] == 1
    response = await client.post("/api/jobs", data=form(data, "3.mp4"))
    assert await error_of(response, 503) == (
        "2 jobs are running or queued (the limit is 2); try again when one has finished")
    assert response.headers["Retry-After"] == "30"
    await wait_for(client, first["id"], ("running",))
    status = await (await client.get(f"/api/jobs/{second['id']}")).json()
    assert status["state"] == "queued"
    listed = await (await client.get("/api/jobs")).json()
    assert [j["id"] for j in listed["jobs"]] == [first["id"], second["id"]]
    # deleting the queued job never starts it; the running one goes on
    await client.delete(f"/api/jobs/{second['id']}")
    assert (await (await client.get(f"/api/jobs/{first['id']}")).json())["state"] == "running"
    await client.delete(f"/api/jobs/{first['id']}")
    assert list((tmp_path / "jobs").iterdir()) == []


@pytest.mark.asyncio
async def test_finished_jobs_expire_with_their_files(make_client: MakeClient, video: Path,
                                                     tmp_path: Path) -> None:
    client = await make_client(job_expiry_s=600)
    job = await (await client.post("/api/jobs", data=form(video.read_bytes(), "c.mp4"))).json()
    done = await wait_for(client, job["id"], ("done", "failed"))
    manager = client.app[JOBS_KEY]
    assert await manager.expire(now=done["finished_s"] + 599) == []
    assert (tmp_path / "jobs" / job["id"]).is_dir()
    assert await manager.expire(now=done["finished_s"] + 601) == [job["id"]]
    assert not (tmp_path / "jobs" / job["id"]).exists()
    assert (await client.get(f"/api/jobs/{job['id']}")).status == 404


@pytest.mark.asyncio
async def test_stale_job_folders_are_swept_at_start(make_client: MakeClient,
                                                    tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    stale, fresh, foreign = jobs / ("a" * 32), jobs / ("b" * 32), jobs / "keep-me"
    for folder in (stale, fresh, foreign):
        folder.mkdir()
    old = time.time() - 7200
    os.utime(stale, (old, old))
    os.utime(foreign, (old, old))
    await make_client(job_expiry_s=3600)
    assert not stale.exists() and fresh.exists() and foreign.exists()


@pytest.mark.asyncio
async def test_orphaned_job_folders_are_swept_while_the_server_runs(
        make_client: MakeClient, video: Path, tmp_path: Path) -> None:
    # an expiry of 2 s sweeps every second
    client = await make_client(Engines(delay_s=0.5), job_expiry_s=2)
    manager = client.app[JOBS_KEY]
    job = await (await client.post("/api/jobs", data=form(video.read_bytes(), "c.mp4"))).json()
    await wait_for(client, job["id"], ("running",))
    _, in_flight = manager.new_dir()  # a request still streaming its upload
    jobs = tmp_path / "jobs"
    orphan, foreign = jobs / ("c" * 32), jobs / "keep-me"
    for folder in (orphan, foreign):
        folder.mkdir()
    old = time.time() - 3600
    for folder in (orphan, foreign, in_flight, jobs / job["id"]):
        os.utime(folder, (old, old))
    deadline = time.monotonic() + 10
    while orphan.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not orphan.exists()
    assert foreign.exists() and in_flight.exists() and (jobs / job["id"]).exists()
    await client.delete(f"/api/jobs/{job['id']}")
    await manager.discard(in_flight)


def test_a_killed_servers_temporary_folders_are_removed_by_the_next(tmp_path: Path) -> None:
    pytest.importorskip("aiortc", reason="the live background folder needs the [webrtc] extra")
    import urllib.request

    env = {"TMPDIR": str(tmp_path)}
    killed, url = _start_serve("--engines", "u2netp", env=env)
    try:
        data, _ = square_png()
        request = urllib.request.Request(url + "api/live/backgrounds", data=data, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
    finally:
        killed.kill()  # SIGKILL: it cannot clean up
        killed.communicate(timeout=30)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert [re.sub(r"-[a-z0-9_]+$", "", n) for n in left] == [
        f"streammatte-jobs-{killed.pid}", f"streammatte-live-{killed.pid}"]
    alive = tmp_path / f"streammatte-jobs-{os.getpid()}-running"  # this process is alive
    not_ours = [tmp_path / "streammatte-jobs-stale", tmp_path / "streammatte-other-1-x",
                tmp_path / f"streammatte-jobs-{killed.pid}-file"]
    alive.mkdir()
    not_ours[0].mkdir()
    not_ours[1].mkdir()
    not_ours[2].write_text("not a folder")
    following, _ = _start_serve("--engines", "u2netp", env=env)
    try:
        assert not any((tmp_path / n).exists() for n in left)
        assert alive.is_dir() and all(p.exists() for p in not_ours)
    finally:
        following.send_signal(signal.SIGTERM)
        following.communicate(timeout=30)


@pytest.mark.asyncio
async def test_jobs_are_listed_only_to_the_client_session_that_made_them(
        aiohttp_client: AiohttpClient, tmp_path: Path, video: Path) -> None:
    settings = ServerSettings(jobs_dir=tmp_path / "jobs", engine="brightness", extensions=())
    server = TestServer(create_app(settings, engines=Engines().provider()))
    alice: TestClient[Any, Any] = await aiohttp_client(server)
    bob: TestClient[Any, Any] = await aiohttp_client(server)
    cookieless: TestClient[Any, Any] = await aiohttp_client(server, cookie_jar=DummyCookieJar())

    async def start(client: TestClient[Any, Any]) -> str:
        response = await client.post("/api/jobs", data=form(video.read_bytes(), "c.mp4"))
        assert response.status == 202
        job_id: str = (await response.json())["id"]
        return job_id

    async def listed(client: TestClient[Any, Any]) -> list[str]:
        return [j["id"] for j in (await (await client.get("/api/jobs")).json())["jobs"]]

    response = await alice.get("/")  # a browser's first request sets its session cookie
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    alices = [await start(alice), await start(alice)]
    bobs = [await start(bob)]
    anonymous = await start(cookieless)
    assert await listed(alice) == alices
    assert await listed(bob) == bobs
    assert await listed(cookieless) == []  # without its cookie a client is a new session
    # a job's id is enough to read it, whoever asks
    for client in (bob, cookieless):
        assert (await client.get(f"/api/jobs/{alices[0]}")).status == 200
    assert (await alice.get(f"/api/jobs/{anonymous}")).status == 200
    for job_id in (*alices, *bobs, anonymous):
        await wait_for(alice, job_id, ("done",))


# -- security -------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_a_token_is_required_on_every_request_when_set(make_client: MakeClient) -> None:
    client = await make_client(token="s3cret-token")
    for path in ("/", "/static/app.js", "/api/engines", "/api/openapi.json"):
        response = await client.get(path)
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await error_of(await client.get("/api/engines"), 401)).startswith(
        "this server needs a token")
    response = await client.get("/api/engines", headers={"Authorization": "Bearer nope-nope"})
    assert await error_of(response, 401) == "wrong token"
    assert await error_of(await client.get("/?token=nope-nope"), 401) == "wrong token"
    response = await client.get("/api/engines",
                                headers={"Authorization": "Bearer s3cret-token"})
    assert response.status == 200
    data, _ = square_png()
    response = await client.post("/api/remove", data=form(data, "a.png"),
                                 headers={"Authorization": "Bearer wrong-token"})
    assert response.status == 401


@pytest.mark.asyncio
async def test_the_token_goes_in_a_url_only_to_open_a_page(make_client: MakeClient) -> None:
    client = await make_client(token="s3cret-token")
    # even the right one: in an API URL the token would end up in logs and histories
    message = await error_of(await client.get("/api/info?token=s3cret-token"), 401)
    assert message.startswith("?token= opens a page only: send 'Authorization: Bearer")
    assert (await client.get("/api/info", headers={"Authorization": "bearer s3cret-token"})
            ).status == 200  # the scheme in any case
    assert (await client.get("/?token=s3cret-token")).status == 200


@pytest.mark.asyncio
async def test_the_page_opened_with_the_token_sets_a_strict_cookie(
        make_client: MakeClient) -> None:
    client = await make_client(token="s3cret-token")
    response = await client.get("/?token=s3cret-token")
    assert response.status == 200
    cookie = response.cookies[TOKEN_COOKIE]
    assert cookie.value == "s3cret-token"
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    # the test client keeps cookies: the assets and API now load without the query
    assert (await client.get("/static/app.js")).status == 200
    assert (await client.get("/api/info")).status == 200


def test_binding_off_loopback_requires_a_token() -> None:
    with pytest.raises(ConfigError, match=r"host '0\.0\.0\.0' is not loopback: a token"):
        ServerSettings(host="0.0.0.0")
    with pytest.raises(ConfigError, match="at least 8 characters"):
        ServerSettings(token="short")
    assert ServerSettings(host="0.0.0.0", token="x" * 16).token_required
    assert not ServerSettings(host="::1").token_required
    assert not ServerSettings(host="localhost").token_required


@pytest.mark.asyncio
async def test_loopback_refuses_foreign_hosts_and_cross_origin_posts(
        make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.get("/api/info", headers={"Host": "attacker.example:8080"})
    assert await error_of(response, 403) == (
        "Host 'attacker.example:8080' is not this server's loopback address")
    assert (await client.get("/api/info", headers={"Host": "localhost:1234"})).status == 200
    data, _ = square_png()
    response = await client.post("/api/remove", data=form(data, "a.png"),
                                 headers={"Origin": "http://attacker.example"})
    assert (await error_of(response, 403)).startswith(
        "cross-origin request from 'http://attacker.example' refused")
    own = f"http://{client.host}:{client.port}"
    response = await client.post("/api/remove", data=form(data, "a.png"),
                                 headers={"Origin": own})
    assert response.status == 200


@pytest.mark.asyncio
async def test_extensions_install_skip_and_get_the_same_security(
        make_client: MakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "extpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "needs_missing.py").write_text("import streammatte_no_such_dependency\n")
    (package / "hello.py").write_text(
        "from aiohttp import web\n"
        "def install(app, settings):\n"
        "    async def hello(request):\n"
        "        return web.json_response({'engine': settings.engine})\n"
        "    app.router.add_get('/api/hello', hello)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    client = await make_client(token="s3cret-token", extensions=(
        "extpkg.absent", "extpkg.needs_missing", "extpkg.hello"))
    status = client.app[EXTENSIONS_KEY]
    assert status["extpkg.absent"] == "not present"
    assert status["extpkg.needs_missing"].startswith(
        "skipped: needs streammatte_no_such_dependency")
    assert status["extpkg.hello"] == "installed"
    assert (await client.get("/api/hello")).status == 401
    response = await client.get("/api/hello", headers={"Authorization": "Bearer s3cret-token"})
    assert await response.json() == {"engine": "brightness"}
    # the file API keeps working beside a skipped extension
    data, _ = square_png()
    response = await client.post("/api/remove", data=form(data, "a.png"),
                                 headers={"Authorization": "Bearer s3cret-token"})
    assert response.status == 200


@pytest.mark.asyncio
async def test_unknown_api_paths_answer_json(make_client: MakeClient) -> None:
    client = await make_client()
    assert await error_of(await client.get("/api/nothing"), 404) == "Not Found"
    assert await error_of(await client.put("/api/remove"), 405) == "Method Not Allowed"


def test_probe_reads_sizes_from_headers_without_decoding(tmp_path: Path) -> None:
    # a 20000×20000 PNG header: refused by size before anything would decode 1.2 GB
    header = (b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR"
              + (20000).to_bytes(4, "big") + (20000).to_bytes(4, "big") + b"\x08\x06\0\0\0")
    bomb = tmp_path / "bomb"
    bomb.write_bytes(header + b"\0" * 64)
    info = probe(bomb, "bomb.png")
    assert (info.kind, info.width, info.height) == ("image", 20000, 20000)
    vp8x = tmp_path / "x.webp"
    vp8x.write_bytes(b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\x10\0\0\0"
                     + (639).to_bytes(3, "little") + (479).to_bytes(3, "little"))
    assert (probe(vp8x).width, probe(vp8x).height) == (640, 480)
    hls = tmp_path / "list.m3u8"
    hls.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n")
    with pytest.raises(ProbeError, match="not a supported image"):
        probe(hls)


def test_the_server_modules_import_each_other_without_a_loop() -> None:
    """settings at the bottom, then jobs, api, and app and live on top: an import loop (even
    one hidden in a function) would make the order of first imports matter."""
    import ast

    import streammatte.server

    folder = Path(streammatte.server.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module] if node.module else [a.name for a in node.names]
                found |= {n.split(".")[0] for n in names}
        graph[path.stem] = found - {"__init__"}

    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n}))
                   for n in graph.get(start, ()))

    assert {"settings", "jobs", "api", "app", "live"} <= set(graph)
    assert [m for m in sorted(graph) if m != "__init__" and reaches(m, m)] == []


# -- the command and the sample client ------------------------------------------------------

def _start_serve(*args: str, env: dict[str, str] | None = None) -> tuple[
        subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "streammatte", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})})
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"serving on (http://\S+)", line)
    if match is None:
        process.kill()
        errors = process.stderr.read() if process.stderr else ""
        raise AssertionError(f"no URL printed: {line!r} {errors}")
    return process, match.group(1)


def _get_json(url: str, token: str | None = None) -> Any:
    import urllib.request

    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_serve_prints_the_url_once_and_stops_cleanly(tmp_path: Path) -> None:
    process, url = _start_serve("--engines", "u2netp,mog2", "--jobs-dir", str(tmp_path / "j"))
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        engines = _get_json(url + "api/engines")
        assert [e["name"] for e in engines["engines"]] == ["mog2", "u2netp"]
        assert (tmp_path / "j").is_dir()
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "serving on" not in out  # printed once, at start


def test_serve_off_loopback_generates_and_prints_a_token() -> None:
    process, url = _start_serve("--host", "0.0.0.0", env={"STREAMMATTE_TOKEN": ""})
    try:
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]{32})", url)
        assert match, url
        base = f"http://127.0.0.1:{match.group(1)}/"
        import urllib.error

        with pytest.raises(urllib.error.HTTPError, match="401"):
            _get_json(base + "api/info")
        assert _get_json(base + "api/info", token=match.group(2))["version"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


def test_serve_refuses_a_default_engine_it_does_not_offer() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streammatte", "serve", "--port", "0", "--engines", "mog2"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "default engine: unknown engine 'u2netp' (choose from: mog2)" in result.stderr


@pytest.mark.asyncio
async def test_the_sample_client_removes_an_image_and_runs_a_video_job(
        aiohttp_client: AiohttpClient, tmp_path: Path, video: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "api_client", Path(__file__).resolve().parents[1] / "samples" / "api_client.py")
    assert spec is not None and spec.loader is not None
    sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sample)
    settings = ServerSettings(jobs_dir=tmp_path / "jobs", engine="brightness", extensions=(),
                              token="sample-token")
    client = await aiohttp_client(create_app(settings, engines=Engines().provider()))
    server = f"http://{client.host}:{client.port}"
    data, mask = square_png()
    image = tmp_path / "photo.jpg"
    image.write_bytes(data)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = [str(image), str(video), "--server", server, "--token", "sample-token",
            "--format", "h264", "--out-dir", str(out_dir)]
    status = await asyncio.to_thread(sample.main, argv)
    assert status == 0
    png = decode((out_dir / "photo-nobg.png").read_bytes())
    np.testing.assert_array_equal(png[..., 3], np.where(mask, 255, 0))
    with av.open(str(out_dir / "clip-nobg.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 12
    # the sample deletes its job when it has the result
    assert list((tmp_path / "jobs").iterdir()) == []
    # it keeps its session cookie, so it sees its own jobs listed, and only those
    mine, other = sample.Client(server, "sample-token"), sample.Client(server, "sample-token")
    job = await asyncio.to_thread(mine.start_job, video)
    assert [j["id"] for j in await asyncio.to_thread(mine.jobs)] == [job["id"]]
    assert await asyncio.to_thread(other.jobs) == []
    await asyncio.to_thread(mine.wait, job["id"])
    wrong = [*argv[:4], "--token", "wrong-token", *argv[6:]]
    assert await asyncio.to_thread(sample.main, wrong) == 1


@pytest.mark.asyncio
async def test_refine_option_changes_the_matte_edges(
        aiohttp_client: AiohttpClient, tmp_path: Path, shared_data: Path,
        u2netp_path: Path) -> None:
    """refine=true runs guided upsampling: the PNG differs from the bilinear one at edges."""
    client = await _real_u2netp_client(aiohttp_client, tmp_path, u2netp_path)
    image = (shared_data / "rembg-golden" / "anime-girl-1.jpg").read_bytes()
    results = []
    for refine in ("false", "true"):
        data = form(image, "anime-girl-1.jpg")
        data.add_field("refine", refine)
        response = await client.post("/api/remove", data=data)
        assert response.status == 200, await response.text()
        results.append(decode(await response.read())[..., 3].astype(int))
    assert results[0].shape == results[1].shape == (601, 850)
    assert np.abs(results[0] - results[1]).max() > 20
    info = await (await client.get("/api/info")).json()
    assert info["default_temporal"] == "keyframes"
