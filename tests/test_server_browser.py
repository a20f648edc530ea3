"""The page in a real browser: Debian's chromium, headless, driven over DevTools.

Skips with the reason when chromium is not installed (``apt-get install chromium``).
Screenshots are kept in test-artifacts/.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import pytest
from browser import Chromium, require_chromium
from media import make_video
from pytest_aiohttp.plugin import AiohttpServer
from test_server_api import Engines, decode

from streammatte.server import ServerSettings, create_app

#: the RGBA of the result image's pixel (2, 2), read back through a canvas
RESULT_CORNER_RGBA = """(async () => {
    const img = document.getElementById('result-image');
    const canvas = new OffscreenCanvas(img.naturalWidth, img.naturalHeight);
    const context = canvas.getContext('2d');
    context.drawImage(img, 0, 0);
    return Array.from(context.getImageData(2, 2, 1, 1).data);
})()"""


@pytest.fixture
def chromium() -> str:
    return require_chromium()


@pytest.mark.asyncio
async def test_page_removes_the_background_of_a_picked_image(
        aiohttp_server: AiohttpServer, chromium: str, tmp_path: Path, shared_data: Path,
        u2netp_path: Path, artifacts_dir: Path) -> None:
    settings = ServerSettings(jobs_dir=tmp_path / "jobs", extensions=(), engines=("u2netp",),
                              models_dir=u2netp_path.parent, device="cpu")
    server = await aiohttp_server(create_app(settings))
    image = shared_data / "rembg-golden" / "anime-girl-1.jpg"
    async with Chromium.launch(tmp_path, executable=chromium) as browser:
        downloads = tmp_path / "downloads"
        await browser.allow_downloads(downloads)
        page = await browser.new_page()
        await page.goto(str(server.make_url("/")))
        await page.wait_for("document.body.dataset.state === 'ready'")
        assert await page.evaluate("document.getElementById('engine').value") == "u2netp"
        await page.set_files("#file-input", [image])
        await page.wait_for("document.body.dataset.state === 'done'", timeout_s=120)
        # the original is previewed and the result shown on the checkerboard, decoded
        shown = await page.evaluate("""(() => {
            const result = document.getElementById('result-image');
            const original = document.getElementById('original-image');
            return {result: [result.naturalWidth, result.naturalHeight, !result.hidden],
                    original: [original.naturalWidth, !original.hidden],
                    checker: getComputedStyle(result.parentElement).backgroundImage,
                    download: document.getElementById('download').download};
        })()""")
        assert shown["result"] == [850, 601, True]
        assert shown["original"] == [850, True]
        assert "conic-gradient" in shown["checker"]
        assert shown["download"] == "anime-girl-1-nobg.png"
        await page.screenshot(artifacts_dir / "server-page-image.png")

        finished = asyncio.ensure_future(browser.wait_download())
        await page.click("#download")
        progress = await finished
        assert progress["state"] == "completed"
        png = downloads / "anime-girl-1-nobg.png"
        saved = decode(png.read_bytes())
        assert saved.shape == (601, 850, 4)
        # the download is the real cut-out: it agrees with rembg's u2netp matte on what is
        # foreground (values differ a little: no per-image min/max stretch here)
        golden = decode(image.with_name("anime-girl-1.u2netp.png").read_bytes())[..., 3]
        assert ((saved[..., 3] > 127) == (golden > 127)).mean() > 0.98
        assert (saved[..., 3] == 0).mean() > 0.5  # the background is see-through

        # process again with other settings: a colour background, no alpha left
        await page.evaluate("document.getElementById('background').value = 'green'")
        await page.click("#again")
        await page.wait_for("document.body.dataset.state === 'done' && "
                            "!document.getElementById('again').disabled", timeout_s=120)
        corner = await page.evaluate(RESULT_CORNER_RGBA)
        assert corner == [0, 177, 64, 255]

        # and over a picture of the user's own, sent beside the image
        picture = tmp_path / "backdrop.png"
        assert cv2.imwrite(str(picture), np.full((120, 160, 3), (30, 40, 200), np.uint8))
        await page.evaluate("document.getElementById('background').value = 'picture'")
        await page.set_files("#background-file", [picture])
        await page.click("#again")
        await page.wait_for("document.body.dataset.state === 'done' && "
                            "!document.getElementById('again').disabled", timeout_s=120)
        corner = await page.evaluate(RESULT_CORNER_RGBA)
        assert corner == [200, 40, 30, 255]  # the picture's colour (written as BGR)
        assert page.errors == []


@pytest.mark.asyncio
async def test_page_runs_a_dropped_video_as_a_job_with_progress(
        aiohttp_server: AiohttpServer, chromium: str, tmp_path: Path,
        artifacts_dir: Path) -> None:
    settings = ServerSettings(jobs_dir=tmp_path / "jobs", extensions=(), engine="brightness",
                              token="browser-token")
    server = await aiohttp_server(create_app(settings,
                                             engines=Engines(delay_s=0.05).provider()))
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=40, size=(96, 64))
    async with Chromium.launch(tmp_path, executable=chromium) as browser:
        page = await browser.new_page()
        await page.goto(str(server.make_url("/?token=browser-token")))
        await page.wait_for("document.body.dataset.state === 'ready'")
        # the token was taken out of the address bar, and kept for the tab
        assert await page.evaluate("location.search") == ""
        await page.drop_files("#drop-zone", [clip])
        status = await page.wait_for(
            "document.body.dataset.state === 'processing' && "
            "/ fps · /.test(document.getElementById('status').textContent) && "
            "document.getElementById('status').textContent", timeout_s=60)
        assert " frames · " in status and " left" in status
        await page.wait_for("document.body.dataset.state === 'done'", timeout_s=120)
        video = await page.wait_for("""(() => {
            const v = document.getElementById('result-video');
            return v.readyState >= 2 && [v.videoWidth, v.videoHeight];
        })()""", timeout_s=30)
        assert video == [96, 64]
        info = await page.evaluate("document.getElementById('result-info').textContent")
        assert info.startswith("40 frames")
        await page.screenshot(artifacts_dir / "server-page-video.png")
        assert page.errors == []
