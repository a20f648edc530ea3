"""A real browser on the live pages: Debian's chromium, headless, with a fake camera fed from a
generated .y4m, talking WebRTC to the server; checked from the page's own pixels."""

from __future__ import annotations

import asyncio
import contextlib
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
async def browser_page(url: str, y4m: Path) -> AsyncIterator[Page]:
    async with Chromium.launch(y4m.parent, extra_flags=live_flags(y4m)) as browser:
        page = await browser.new_page(1280, 720)
        await page.goto(url)
        yield page


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
                await page.screenshot(artifacts_dir / "live_page.png")
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
                await page.screenshot(artifacts_dir / "obs_alpha_page.png")
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
                await page.wait_for("document.getElementById('overlay').textContent"
                                    ".includes('shed')")
                shed_text = await page.evaluate("document.getElementById('overlay')"
                                                ".textContent")
                shed = await page.evaluate(stats_js)
                await page.evaluate("document.getElementById('keep-smoothing').click()")
                await page.wait_for(f"{stats_js}.smoothing === 'flow' && "
                                    f"{stats_js}.settings.keep_smoothing === true", timeout_s=30)
                await asyncio.sleep(1.5)
                kept = await page.evaluate(stats_js)
                shown = await page.evaluate("document.getElementById('overlay').textContent"
                                            ".includes('shed')")
        finally:
            await runner.cleanup()
        return shed_text, shed, shown, kept

    shed_text, shed, shown_after, kept = asyncio.run(asyncio.wait_for(main(), 180))
    assert "smoothing adaptive (flow shed to keep up)" in shed_text
    assert shed["settings"]["temporal"] == "flow" and shed["dropped"] > 0
    assert kept["smoothing"] == "flow" and not shown_after
