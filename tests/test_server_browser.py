"""The page in a real browser: Debian's chromium, headless, driven over DevTools.

Skips with the reason when chromium is not installed (``apt-get install chromium``).
Screenshots at 1280 and 390 px wide are kept in test-artifacts/ (server-page-*.png).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from browser import Chromium, Page, require_chromium
from media import make_video
from pytest_aiohttp.plugin import AiohttpServer
from test_server_api import Engines, decode, square_png

from streammatte.server import ServerSettings, create_app

#: the RGBA of the result image's pixel (2, 2), read back through a canvas
RESULT_CORNER_RGBA = """(async () => {
    const img = document.getElementById('result-image');
    await img.decode();
    const canvas = new OffscreenCanvas(img.naturalWidth, img.naturalHeight);
    const context = canvas.getContext('2d');
    context.drawImage(img, 0, 0);
    return Array.from(context.getImageData(2, 2, 1, 1).data);
})()"""
DONE = "document.body.dataset.state === 'done'"
#: requests the page made to a path (the Resource Timing list: same-origin, so complete)
REQUESTS_TO = "performance.getEntriesByType('resource').filter(e => new URL(e.name).pathname " \
              "=== {path!r}).length"


def choose(element_id: str, value: str) -> str:
    """JS that picks ``value`` in a <select> or an <input> as a user would (a change event)."""
    return (f"(() => {{ const e = document.getElementById({element_id!r}); e.value = {value!r}; "
            "e.dispatchEvent(new Event('change', {bubbles: true})); })()")


@pytest.fixture
def chromium() -> str:
    return require_chromium()


async def serve(aiohttp_server: AiohttpServer, tmp_path: Path, fake: Engines | None = None,
                **settings: Any) -> str:
    """The server's URL; ``fake``: the test engines instead of the catalog's."""
    settings.setdefault("jobs_dir", tmp_path / "jobs")
    settings.setdefault("extensions", ())
    if fake is not None:
        settings.setdefault("engine", "brightness")
    app = create_app(ServerSettings(**settings),
                     **({"engines": fake.provider()} if fake is not None else {}))
    server = await aiohttp_server(app)
    return str(server.make_url("/"))


@contextlib.asynccontextmanager
async def open_page(tmp_path: Path, chromium: str, url: str, width: int = 1280
                    ) -> AsyncIterator[tuple[Chromium, Page]]:
    async with Chromium.launch(tmp_path, executable=chromium) as browser:
        page = await browser.new_page(width, 900, mobile=width < 600)
        await page.goto(url)
        await page.wait_for("document.body.dataset.state === 'ready'")
        yield browser, page


def square_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data, mask = square_png((160, 120))
    path = tmp_path / "square.png"
    path.write_bytes(data)
    return path, mask


async def frame_heights(page: Page) -> list[int]:
    """The heights of the original's and the result's panels of a clip, in CSS pixels."""
    heights: list[int] = await page.evaluate(
        "[...document.querySelectorAll('#video-view .frame')]"
        ".map(f => Math.round(f.getBoundingClientRect().height))")
    return heights


def engine_calls(engines: Engines) -> int:
    return sum(getattr(e, "calls", 0) for e in engines.opened)


@pytest.mark.asyncio
async def test_page_removes_the_background_of_a_picked_image(
        aiohttp_server: AiohttpServer, chromium: str, tmp_path: Path, shared_data: Path,
        u2netp_path: Path, artifacts_dir: Path) -> None:
    url = await serve(aiohttp_server, tmp_path, engines=("u2netp",),
                      models_dir=u2netp_path.parent, device="cpu")
    image = shared_data / "rembg-golden" / "anime-girl-1.jpg"
    async with open_page(tmp_path, chromium, url) as (browser, page):
        downloads = tmp_path / "downloads"
        await browser.allow_downloads(downloads)
        # the engine is offered by what it is good for, the model name second
        assert await page.evaluate("document.getElementById('engine').value") == "u2netp"
        assert await page.evaluate("document.getElementById('engine').selectedOptions[0].text"
                                   ) == "Anything, fastest · u2netp"
        await page.set_files("#file-input", [image])
        await page.wait_for(DONE, timeout_s=120)
        shown = await page.evaluate("""(() => {
            const result = document.getElementById('result-image');
            const original = document.getElementById('original-image');
            return {result: [result.naturalWidth, result.naturalHeight, !result.hidden],
                    original: [original.naturalWidth, !original.hidden],
                    checker: getComputedStyle(document.getElementById('stage')).backgroundImage,
                    download: document.getElementById('download').download,
                    caption: document.getElementById('result-info').textContent,
                    details: document.getElementById('result-info').title};
        })()""")
        assert shown["result"] == [850, 601, True]
        assert shown["original"] == [850, True]
        assert "conic-gradient" in shown["checker"]
        assert shown["download"] == "anime-girl-1-nobg.png"
        # plain words on the page, the jargon in the tooltip
        assert shown["caption"].startswith("u2netp · CPU · ") and shown["caption"].endswith(" s")
        assert "CPUExecutionProvider" in shown["details"]
        await page.screenshot(artifacts_dir / "server-page-image-1280.png")

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

        # another background: composed again at once, the model does not run again
        await page.evaluate(choose("background", "green"))
        await page.wait_for(DONE + " && document.getElementById('download').textContent "
                            "=== 'Download PNG'", timeout_s=60)
        assert await page.evaluate(RESULT_CORNER_RGBA) == [0, 177, 64, 255]

        # and over a picture of the user's own
        picture = tmp_path / "backdrop.png"
        assert cv2.imwrite(str(picture), np.full((120, 160, 3), (30, 40, 200), np.uint8))
        await page.evaluate(choose("background", "picture"))
        await page.set_files("#background-file", [picture])
        await page.wait_for(DONE, timeout_s=60)
        await page.wait_for(f"({RESULT_CORNER_RGBA}).then(c => c[0] === 200)", timeout_s=30)
        assert await page.evaluate(RESULT_CORNER_RGBA) == [200, 40, 30, 255]
        assert await page.evaluate(REQUESTS_TO.format(path="/api/mattes")) == 1
        assert page.errors == []


@pytest.mark.asyncio
async def test_a_new_background_is_composed_without_running_the_engine_again(
        aiohttp_server: AiohttpServer, chromium: str, tmp_path: Path) -> None:
    engines = Engines()
    url = await serve(aiohttp_server, tmp_path, engines)
    path, _ = square_file(tmp_path)
    async with open_page(tmp_path, chromium, url) as (_, page):
        await page.set_files("#file-input", [path])
        await page.wait_for(DONE)
        assert engine_calls(engines) == 1
        for background, corner in (("blue", [0, 71, 187, 255]), ("black", [0, 0, 0, 255]),
                                   ("auto", [0, 0, 0, 0])):
            await page.evaluate(choose("background", background))
            await page.wait_for(f"{DONE} && ({RESULT_CORNER_RGBA}).then(c => "
                                f"c.join() === {','.join(map(str, corner))!r})", timeout_s=30)
        await page.evaluate(choose("custom-colour", "#ff8800"))  # not applied: not chosen
        await page.evaluate(choose("background", "custom"))
        await page.wait_for(f"{DONE} && ({RESULT_CORNER_RGBA}).then(c => c.join() === "
                            "'255,136,0,255')", timeout_s=30)
        assert engine_calls(engines) == 1  # five looks, one engine run
        # refine changes the matte itself: that one runs the engine again
        await page.evaluate("document.getElementById('refine').click()")
        await page.wait_for(f"{DONE} && {REQUESTS_TO.format(path='/api/mattes')} === 2")
        assert engine_calls(engines) == 2
        assert page.errors == []


@pytest.mark.asyncio
async def test_the_before_after_slider_and_zoom(aiohttp_server: AiohttpServer, chromium: str,
                                                tmp_path: Path, artifacts_dir: Path) -> None:
    url = await serve(aiohttp_server, tmp_path, Engines())
    path, _ = square_file(tmp_path)
    async with open_page(tmp_path, chromium, url) as (_, page):
        await page.evaluate(choose("background", "green"))
        await page.set_files("#file-input", [path])
        await page.wait_for(DONE)

        async def shown_at(*fractions: float) -> list[list[int]]:
            """The colour on screen at these fractions of the picture's width, low down:
            clear of the square (a quarter to three quarters of each side) and of the
            Before / After tags (at the top)."""
            pixels = await page.pixels("#result-image")
            h, w = pixels.shape[:2]
            return [pixels[h - h // 8, int(w * f)].tolist() for f in fractions]

        # keyboard only: tab to the slider, then Home, End, Page Up as a user would
        await page.evaluate("document.getElementById('compare').focus()")
        await page.press("Home", "Home", 36)
        assert await page.evaluate("document.getElementById('compare').value") == "0"
        assert await shown_at(0.05, 0.95) == [[0, 177, 64]] * 2  # all result: green
        await page.press("End", "End", 35)
        assert await shown_at(0.05, 0.95) == [[30, 30, 30]] * 2  # all original: dark
        await page.press("Home", "Home", 36)
        for _ in range(3):
            await page.press("PageUp", "PageUp", 33)
        assert await page.evaluate("document.getElementById('compare').value") == "30"
        assert await shown_at(0.05, 0.95) == [[30, 30, 30], [0, 177, 64]]
        # the focused slider shows its focus ring
        assert await page.evaluate("getComputedStyle(document.activeElement).outlineStyle"
                                   ) == "solid"
        await page.screenshot(artifacts_dir / "server-page-compare-1280.png")

        await page.click("[data-zoom='2']")
        size = await page.evaluate("(() => { const i = document.getElementById('result-image');"
                                   " return [i.getBoundingClientRect().width, i.naturalWidth];"
                                   " })()")
        assert size == [320, 160]
        await page.click("[data-zoom='fit']")
        assert page.errors == []


@pytest.mark.asyncio
async def test_page_runs_a_dropped_video_as_a_job_with_progress(
        aiohttp_server: AiohttpServer, chromium: str, tmp_path: Path,
        artifacts_dir: Path) -> None:
    url = await serve(aiohttp_server, tmp_path, Engines(delay_s=0.05), token="browser-token")
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=40, size=(96, 64))
    async with Chromium.launch(tmp_path, executable=chromium) as browser:
        page = await browser.new_page()
        await page.goto(url + "?token=browser-token")
        await page.wait_for("document.body.dataset.state === 'ready'")
        # the token was taken out of the address bar, and kept for the tab
        assert await page.evaluate("location.search") == ""
        await page.drop_files("#drop-zone", [clip])
        status = await page.wait_for(
            "document.body.dataset.state === 'processing' && "
            "/ fps · /.test(document.getElementById('status').textContent) && "
            "document.getElementById('status').textContent", timeout_s=60)
        assert " frames · " in status and " left" in status
        await page.wait_for(DONE, timeout_s=120)
        video = await page.wait_for("""(() => {
            const v = document.getElementById('result-video');
            return v.readyState >= 2 && [v.videoWidth, v.videoHeight];
        })()""", timeout_s=30)
        assert video == [96, 64]
        info = await page.evaluate("document.getElementById('result-info').textContent")
        assert info.startswith("brightness · 40 frames")
        # named by what the file is, not by its codec
        assert await page.evaluate("document.getElementById('download').textContent"
                                   ) == "Download WebM (with alpha)"
        heights = await frame_heights(page)
        assert len(heights) == 2 and heights[0] == heights[1] > 100
        await page.screenshot(artifacts_dir / "server-page-video-1280.png")
        assert page.errors == []


@pytest.mark.asyncio
async def test_an_avi_the_browser_cannot_play_shows_the_servers_poster_and_its_facts(
        aiohttp_server: AiohttpServer, chromium: str, tmp_path: Path,
        artifacts_dir: Path) -> None:
    url = await serve(aiohttp_server, tmp_path, Engines(delay_s=0.02))
    clip = tmp_path / "street.avi"
    make_video(clip, frames=30, size=(160, 120), fps=10, codec="mpeg4")
    async with open_page(tmp_path, chromium, url) as (_, page):
        await page.evaluate(choose("video-format", "h264"))
        await page.evaluate(choose("background", "green"))
        await page.set_files("#file-input", [clip])
        poster = await page.wait_for("""(() => {
            const p = document.getElementById('original-poster');
            return !p.hidden && p.complete && p.naturalWidth && [p.naturalWidth, p.naturalHeight,
                document.getElementById('original-video').hidden,
                document.getElementById('original-note').textContent];
        })()""", timeout_s=60)
        assert poster[:3] == [160, 120, True]
        assert poster[3] == "This browser cannot play AVI: a frame from the server is shown."
        facts = await page.evaluate("document.getElementById('clip-facts').textContent")
        assert facts == "AVI · 160×120 · 10 fps · 3.0 s · 30 frames"
        await page.wait_for(DONE, timeout_s=120)
        assert await page.evaluate("document.getElementById('download').textContent"
                                   ) == "Download MP4"
        heights = await frame_heights(page)
        assert heights[0] == heights[1] > 100
        await page.screenshot(artifacts_dir / "server-page-avi-1280.png")
        assert page.errors == []


@pytest.mark.asyncio
async def test_a_failed_upload_is_shown_in_place_of_the_panels(
        aiohttp_server: AiohttpServer, chromium: str, tmp_path: Path,
        artifacts_dir: Path) -> None:
    url = await serve(aiohttp_server, tmp_path, Engines())
    not_a_picture = tmp_path / "holiday.png"
    not_a_picture.write_bytes(b"these are notes, not a picture")
    async with open_page(tmp_path, chromium, url) as (_, page):
        await page.set_files("#file-input", [not_a_picture])
        await page.wait_for("document.body.dataset.state === 'error'")
        shown = await page.evaluate("""(() => ({
            problem: !document.getElementById('problem').hidden,
            title: document.getElementById('problem-title').textContent,
            text: document.getElementById('problem-text').textContent,
            retry: !document.getElementById('problem-retry').hidden,
            work: !document.getElementById('work').hidden,
            broken: [...document.images].filter(i => !i.hidden && i.getClientRects().length
                                                && i.complete && !i.naturalWidth).length,
        }))()""")
        assert shown == {
            "problem": True, "title": "This file is not a picture or a video this page can use",
            "text": "holiday.png: not a supported image (JPEG, PNG or WebP) or video (MP4, MOV, "
                    "WebM, MKV or AVI)",
            "retry": False, "work": False, "broken": 0}
        await page.screenshot(artifacts_dir / "server-page-error-1280.png")

        # a job that fails half-way can work with other settings: "Try again" is offered
        clip = tmp_path / "clip.mp4"
        make_video(clip, frames=6)
        await page.click("#problem-other")
        await page.evaluate(choose("engine", "failing"))
        await page.set_files("#file-input", [clip])
        await page.wait_for("document.body.dataset.state === 'error'")
        assert await page.evaluate("[document.getElementById('problem-title').textContent, "
                                   "document.getElementById('problem-text').textContent]"
                                   ) == ["Processing stopped", "the engine gave up on frame 3"]
        assert await page.evaluate("!document.getElementById('problem-retry').hidden")
        await page.evaluate(choose("engine", "brightness"))
        await page.click("#problem-retry")
        await page.wait_for(DONE)
        assert await page.evaluate("document.getElementById('problem').hidden")
        assert page.errors == []


@pytest.mark.asyncio
async def test_the_page_fits_a_phone(aiohttp_server: AiohttpServer, chromium: str,
                                     tmp_path: Path, artifacts_dir: Path) -> None:
    url = await serve(aiohttp_server, tmp_path, Engines())
    path, _ = square_file(tmp_path)
    async with open_page(tmp_path, chromium, url, width=390) as (_, page):
        await page.screenshot(artifacts_dir / "server-page-ready-390.png")
        layout = await page.evaluate("""(() => {
            const box = (s) => document.querySelector(s).getBoundingClientRect();
            return {page: document.documentElement.scrollWidth, h1: box('h1').width,
                    main: box('main').width, settings: box('.settings').right};
        })()""")
        assert layout["page"] <= 390  # nothing sticks out sideways
        assert layout["h1"] == layout["main"] > 340  # the title has the full width
        assert layout["settings"] <= 390
        await page.set_files("#file-input", [path])
        await page.wait_for(DONE)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await page.screenshot(artifacts_dir / "server-page-image-390.png")
        assert page.errors == []


@pytest.mark.asyncio
async def test_every_control_has_a_name_and_nothing_is_loaded_from_elsewhere(
        aiohttp_server: AiohttpServer, chromium: str, tmp_path: Path,
        artifacts_dir: Path) -> None:
    url = await serve(aiohttp_server, tmp_path, Engines())
    path, _ = square_file(tmp_path)
    async with open_page(tmp_path, chromium, url) as (_, page):
        await page.evaluate("document.getElementById('more-settings').open = true")
        await page.evaluate(choose("background", "custom"))
        await page.set_files("#file-input", [path])
        await page.wait_for(DONE)
        assert await page.unnamed_controls() == []
        # keyboard focus is drawn on every control the Tab key reaches
        unringed = []
        for _ in range(12):
            await page.tab()
            ring = await page.evaluate("(() => { const e = document.activeElement; return "
                                       "[e.id || e.tagName, getComputedStyle(e).outlineStyle,"
                                       " getComputedStyle(e).outlineWidth]; })()")
            if ring[1] != "solid" or ring[2] == "0px":
                unringed.append(ring)
        assert unringed == []
        origin = url.rstrip("/")
        loaded = await page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(u.startswith(origin + "/") for u in loaded), loaded
        await page.goto(url + "api/docs")
        await page.screenshot(artifacts_dir / "server-page-api-docs-1280.png")
        assert await page.unnamed_controls() == []
        loaded = await page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded == [origin + "/static/app.css"]
        assert page.errors == []


@pytest.mark.asyncio
async def test_the_api_page_reads_on_a_phone(aiohttp_server: AiohttpServer, chromium: str,
                                             tmp_path: Path, artifacts_dir: Path) -> None:
    url = await serve(aiohttp_server, tmp_path, Engines())
    async with Chromium.launch(tmp_path, executable=chromium) as browser:
        page = await browser.new_page(390, 900, mobile=True)
        await page.goto(url + "api/docs")
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        # the main page links to it, and it links back
        assert await page.evaluate("[...document.querySelectorAll('header nav a')]"
                                   ".map(a => a.getAttribute('href'))") == ["/", "/api/docs"]
        await page.screenshot(artifacts_dir / "server-page-api-docs-390.png")
        assert page.errors == []
