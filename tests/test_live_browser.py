"""A real browser on the live pages: Debian's chromium, headless, with a fake camera fed from a
generated .y4m, talking WebRTC to the server; checked from the page's own pixels."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import web
from browser import Chromium, Page
from media import BrightnessEngine, CostlySmoothing, square_frame

from streammatte.bench_live import start_server
from streammatte.server import ServerSettings, create_app
from streammatte.server.jobs import EngineInfo, EngineProvider
from streammatte.temporal import TEMPORAL_FILTERS

W, H = 320, 240


def write_y4m(path: Path, frames: int = 30) -> None:
    with av.open(str(path), "w", format="yuv4mpegpipe") as container:
        stream = container.add_stream("rawvideo", rate=30)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(square_frame(i, W, H)[0], format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


# What the live pages need beyond browser.CHROMIUM_FLAGS: a fake camera playing the .y4m,
# camera permission granted, autoplay, and a software WebGL for the /obs alpha recombination.
def live_flags(y4m: Path) -> tuple[str, ...]:
    return ("--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
            "--disable-dev-shm-usage", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={y4m}",
            "--autoplay-policy=no-user-gesture-required")


@contextlib.asynccontextmanager
async def browser_page(url: str, y4m: Path | None, workdir: Path | None = None
                       ) -> AsyncIterator[Page]:
    """A page on ``url`` whose camera plays ``y4m``; None: a browser without a camera."""
    flags = live_flags(y4m) if y4m is not None else ("--use-fake-ui-for-media-stream",)
    folder = workdir or (y4m.parent if y4m is not None else Path("."))
    async with Chromium.launch(folder, extra_flags=flags) as browser:
        page = await browser.new_page(1280, 720)
        await page.goto(url)
        yield page


async def phone_screenshot(page: Page, path: Path) -> None:
    """The page as a 390 px wide phone shows it."""
    await page.send("Emulation.setDeviceMetricsOverride", {
        "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    await asyncio.sleep(0.5)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await page.screenshot(path)


async def serve_live(background: str, temporal: str = "flow") -> tuple[web.AppRunner, str]:
    settings = ServerSettings(engine="brightness", live_background=background,
                              live_temporal=temporal, extensions=("streammatte.server.live",))
    engines = EngineProvider([EngineInfo("brightness", "test double", "model")],
                             lambda name: BrightnessEngine())
    app = create_app(settings, engines=engines)
    # chromium and the server talk over the host's own address, as a LAN peer would
    return await start_server(app)


# The fake camera shows square_frame: a bright square over a dark texture. Sample a strip of
# the background (left edge, where the square never is at these frame indices) and the square.
def mean_of(sample: dict[str, Any] | None) -> np.ndarray:
    assert sample is not None, "the page has no video frame to sample"
    return np.asarray(sample["mean"], dtype=float)


def test_live_page_shows_the_new_background(tmp_path: Path, artifacts_dir: Path) -> None:
    y4m = tmp_path / "camera.y4m"
    write_y4m(y4m)

    async def main() -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        runner, url = await serve_live("#00ff00")
        try:
            async with browser_page(f"{url}/live?autostart=1&background=%2300ff00", y4m) as page:
                await page.wait_for("window.streammatte && window.streammatte.state.status "
                                    "=== 'live' && document.getElementById('processed')"
                                    ".videoWidth > 0")
                await page.wait_for("window.streammatte.state.stats && "
                                    "window.streammatte.state.stats.frames_out > 10")
                await asyncio.sleep(1.0)
                strip = await page.evaluate("window.streammatte.sampleProcessed(0, 0, 0.05, 1)")
                raw = await page.evaluate("window.streammatte.sampleVideo(document."
                                          "getElementById('original'), 0, 0, 0.05, 1)")
                stats = await page.evaluate("window.streammatte.state.stats")
                # the camera picker names the camera once it is allowed
                cameras = await page.evaluate("[...document.getElementById('camera').options]"
                                              ".map(o => [o.value !== '', o.text])")
                assert [text for chosen, text in cameras if chosen] == [str(y4m)]
                # three figures a person can read, the details in their tooltips
                figures = await page.evaluate("['fps', 'latency', 'dropped'].map(n => ["
                                              "document.getElementById('stat-' + n).textContent,"
                                              " document.getElementById('stat-' + n + '-box')"
                                              ".title])")
                assert re.fullmatch(r"\d+\.\dfps", figures[0][0]), figures
                assert re.fullmatch(r"\+\d+ms", figures[1][0]), figures
                assert re.fullmatch(r"\d+(\.\d)?%", figures[2][0]), figures
                assert "95th percentile" in figures[1][1] and "frames dropped" in figures[2][1]
                await page.screenshot(artifacts_dir / "live-page-1280.png")
                # another resolution swaps the camera track without reconnecting
                before = await page.evaluate("window.streammatte.state.session.camera"
                                             ".getVideoTracks()[0].id")
                await page.evaluate("(() => { const s = document.getElementById('resolution');"
                                    " s.value = '1280x720'; s.dispatchEvent(new Event('change'));"
                                    " })()")
                await page.wait_for("window.streammatte.state.session.camera.getVideoTracks()[0]"
                                    f".id !== {before!r}")
                sent = stats["frames_out"]
                await page.wait_for(f"window.streammatte.state.stats.frames_out > {sent + 20}")
                assert await page.evaluate("window.streammatte.state.status") == "live"
                await phone_screenshot(page, artifacts_dir / "live-page-390.png")
        finally:
            await runner.cleanup()
        return mean_of(strip), mean_of(raw), stats

    processed, original, stats = asyncio.run(asyncio.wait_for(main(), 180))
    # the camera's background is a dark purple texture; the returned video's is green
    assert original[1] < 80, f"camera strip should be dark, got {original}"
    assert processed[1] > 200 and processed[0] < 60 and processed[2] < 60, processed
    assert stats["frames_out"] > 10 and stats["latency_ms"]["p50"] is not None


def test_obs_page_recombines_alpha_onto_a_transparent_canvas(tmp_path: Path,
                                                             artifacts_dir: Path) -> None:
    y4m = tmp_path / "camera.y4m"
    write_y4m(y4m)

    async def main() -> tuple[np.ndarray, np.ndarray]:
        runner, url = await serve_live("blur")
        try:
            async with browser_page(f"{url}/obs?alpha=1", y4m) as page:
                await page.wait_for("window.streammatte && window.streammatte.state.status "
                                    "=== 'live' && document.getElementById('cutout').width > 0")
                await asyncio.sleep(1.5)
                edge = await page.evaluate("window.streammatte.sampleOutput(0, 0, 0.05, 1)")
                # the square spans the middle third vertically; sample its centre row band
                square = await page.evaluate("window.streammatte.sampleOutput(0.0, 0.45, 1, 0.55)")
                await page.screenshot(artifacts_dir / "obs-alpha-page.png")
                size = await page.evaluate("[document.getElementById('cutout').width, "
                                           "document.getElementById('cutout').height]")
        finally:
            await runner.cleanup()
        assert size == [W, H], f"canvas should be the camera size (half the stream): {size}"
        return mean_of(edge), mean_of(square)

    edge, band = asyncio.run(asyncio.wait_for(main(), 180))
    assert edge[3] < 20, f"background should be transparent, alpha {edge[3]:.0f}"
    # the band holds the opaque bright square (a third of the width) and transparent rest
    assert 40 < band[3] < 160, f"band alpha {band[3]:.0f}"



def test_live_page_says_when_smoothing_is_shed_and_keeps_it_on_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TEMPORAL_FILTERS, "flow", CostlySmoothing)  # 60 ms; frames every 33
    y4m = tmp_path / "camera.y4m"
    write_y4m(y4m)
    stats_js = "window.streammatte.state.stats"

    async def main() -> tuple[str, dict[str, Any], bool, dict[str, Any]]:
        runner, url = await serve_live("#00ff00", temporal="flow")
        try:
            async with browser_page(f"{url}/live?autostart=1", y4m) as page:
                await page.wait_for(f"{stats_js} && {stats_js}.smoothing === 'adaptive'",
                                    timeout_s=60)
                await page.wait_for("document.getElementById('smoothing-note').textContent"
                                    ".includes('shed')")
                shed_text = await page.evaluate("document.getElementById('smoothing-note')"
                                                ".textContent")
                shed = await page.evaluate(stats_js)
                await page.evaluate("document.getElementById('keep-smoothing').click()")
                await page.wait_for(f"{stats_js}.smoothing === 'flow' && "
                                    f"{stats_js}.settings.keep_smoothing === true", timeout_s=30)
                await asyncio.sleep(1.5)
                kept = await page.evaluate(stats_js)
                shown = await page.evaluate("!document.getElementById('smoothing-note').hidden")
        finally:
            await runner.cleanup()
        return shed_text, shed, shown, kept

    shed_text, shed, shown_after, kept = asyncio.run(asyncio.wait_for(main(), 180))
    assert shed_text.startswith("Smoothing adaptive (flow shed to keep up with the camera).")
    assert shed["settings"]["temporal"] == "flow" and shed["dropped"] > 0
    assert kept["smoothing"] == "flow" and not shown_after


def test_live_page_without_a_camera_says_what_to_do(tmp_path: Path, artifacts_dir: Path) -> None:
    settings = ServerSettings(jobs_dir=tmp_path / "jobs", port=0)

    async def main() -> dict[str, Any]:
        runner, url = await start_server(create_app(settings))
        try:
            async with browser_page(f"{url}/live", None, tmp_path) as page:
                await page.wait_for("document.body.dataset.state === 'idle'")
                before = await page.evaluate("""(() => ({
                    engine: document.getElementById('engine').value,
                    label: document.getElementById('engine').selectedOptions[0].text,
                    resolution: document.getElementById('resolution').value,
                    links: [...document.querySelectorAll('header nav a')]
                        .map(a => a.getAttribute('href')),
                    videos: [...document.querySelectorAll('video')]
                        .filter(v => v.getClientRects().length).length,
                }))()""")
                await page.screenshot(artifacts_dir / "live-page-idle-1280.png")
                assert await page.unnamed_controls() == []
                await page.click("#start")
                await page.wait_for("document.body.dataset.state === 'error'", timeout_s=30)
                shown = await page.evaluate("""(() => ({
                    title: document.getElementById('live-error-title').textContent,
                    text: document.getElementById('live-error-text').textContent,
                    clip: document.querySelector('#live-error a').getAttribute('href'),
                }))()""")
                await page.screenshot(artifacts_dir / "live-page-no-camera-1280.png")
                await phone_screenshot(page, artifacts_dir / "live-page-no-camera-390.png")
                # the main page links here, and this page links back
                await page.goto(url + "/")
                await page.wait_for("!document.getElementById('live-link').hidden")
                assert page.errors == []
        finally:
            await runner.cleanup()
        return {**before, **shown}

    shown = asyncio.run(asyncio.wait_for(main(), 120))
    # the fast live model by default, not the file page's u2netp
    assert (shown["engine"], shown["label"]) == ("mediapipe-selfie",
                                                 "People, fastest · mediapipe-selfie")
    assert shown["resolution"] == "640x480"
    assert shown["links"] == ["/", "/live", "/api/docs"]
    assert shown["videos"] == 0  # no black boxes before the camera starts
    assert shown["title"] == "No camera found"
    assert "pick another camera above" in shown["text"] and shown["clip"] == "/"


def test_obs_page_without_a_camera_says_so_readably(tmp_path: Path, artifacts_dir: Path) -> None:
    async def main() -> dict[str, Any]:
        runner, url = await serve_live("blur")
        try:
            async with browser_page(f"{url}/obs", None, tmp_path) as page:
                await page.wait_for("window.streammatte.state.status === 'error'")
                shown: dict[str, Any] = await page.evaluate("""(() => {
                    const m = document.getElementById('message');
                    const style = getComputedStyle(m);
                    return {text: m.textContent, panel: style.backgroundColor,
                            colour: style.color, page: getComputedStyle(document.body)
                            .backgroundColor};
                })()""")
                await page.screenshot(artifacts_dir / "obs-page-no-camera-1280.png")
        finally:
            await runner.cleanup()
        return shown

    shown = asyncio.run(asyncio.wait_for(main(), 120))
    assert shown["text"].startswith("streammatte: no camera found")
    assert "?camera=" in shown["text"]  # what to do in OBS, not on a page it does not show
    # white text on its own dark panel; the page itself stays transparent for OBS
    panel = [float(v) for v in re.findall(r"[\d.]+", shown["panel"])]
    assert panel[:3] == [18, 21, 25] and panel[3] > 0.8, shown["panel"]
    assert shown["colour"] == "rgb(255, 255, 255)"
    assert shown["page"] == "rgba(0, 0, 0, 0)"
