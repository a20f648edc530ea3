"""The page's own endpoints (server/pages.py): kept mattes composed again without the engine,
poster frames of clips, and the readable API page. aiohttp's test client and the
BrightnessEngine test double, so results are exact."""

from __future__ import annotations

import asyncio
import html
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import test_server_api
from media import BrightnessEngine, make_video, square_frame
from test_server_api import Client, Engines, MakeClient, decode, error_of, form, square_png

from streammatte.server import ServerSettings
from streammatte.server.jobs import EngineProvider
from streammatte.server.pages import KEEP_MATTES, KeptMatte, MatteStore

#: the API tests' client fixture, under a name these tests' parameters do not shadow
server_client = test_server_api.make_client


def engine_calls(engines: Engines) -> int:
    return sum(e.calls for e in engines.opened if isinstance(e, BrightnessEngine))


async def keep(client: Client, data: bytes, filename: str = "square.png",
               **fields: str) -> dict[str, object]:
    response = await client.post("/api/mattes", data=form(data, filename, **fields))
    assert response.status == 201, await response.text()
    kept: dict[str, object] = await response.json()
    return kept


@pytest.mark.asyncio
async def test_a_kept_matte_takes_new_backgrounds_without_running_the_engine(
        server_client: MakeClient) -> None:
    engines = Engines()
    client = await server_client(engines)
    data, mask = square_png()
    kept = await keep(client, data)
    assert (kept["width"], kept["height"], kept["engine"]) == (64, 48, "brightness")
    assert engine_calls(engines) == 1
    url = str(kept["composite_url"])
    for background, colour in (("green", (0, 177, 64)), ("#ff0000", (255, 0, 0))):
        response = await client.get(url, params={"background": background})
        assert response.status == 200 and response.content_type == "image/png"
        image = decode(await response.read())  # BGRA
        assert image.shape == (48, 64, 4)
        assert (image[~mask][:, 2::-1] == colour).all() and (image[mask][:, :3] == 220).all()
    blurred = decode(await (await client.get(url, params={"background": "blur"})).read())
    assert blurred.shape == (48, 64, 4) and (blurred[mask][:, :3] == 220).all()
    assert engine_calls(engines) == 1  # three backgrounds, one engine run


@pytest.mark.asyncio
async def test_a_composite_is_what_the_one_shot_api_gives(server_client: MakeClient) -> None:
    client = await server_client()
    data, _ = square_png()
    url = str((await keep(client, data))["composite_url"])
    for options in ({}, {"background": "blue"}, {"only_mask": "true"},
                    {"format": "jpeg", "background": "grey"}):
        one_shot = await client.post("/api/remove", data=form(data, "square.png", **options))
        again = await client.get(url, params=options)
        assert again.content_type == one_shot.content_type, options
        assert np.array_equal(decode(await again.read()), decode(await one_shot.read())), options


@pytest.mark.asyncio
async def test_a_kept_matte_composes_over_a_posted_picture(server_client: MakeClient) -> None:
    engines = Engines()
    client = await server_client(engines)
    data, mask = square_png()
    kept = await keep(client, data)
    ok, backdrop = cv2.imencode(".jpg", np.full((30, 40, 3), (200, 40, 30), np.uint8))
    assert ok
    response = await client.post(str(kept["composite_url"]), data=backdrop.tobytes())
    assert response.status == 200, await response.text()
    image = decode(await response.read())
    # the picture was written from BGR (200, 40, 30); decode gives BGR back
    assert np.abs(image[~mask][:, :3].astype(int) - (200, 40, 30)).max() <= 3
    assert engine_calls(engines) == 1
    text_file = await client.post(str(kept["composite_url"]), data=b"not a picture at all")
    assert "not a supported image" in await error_of(text_file, 415)


@pytest.mark.asyncio
async def test_composite_options_are_checked(server_client: MakeClient) -> None:
    client = await server_client()
    url = str((await keep(client, square_png()[0]))["composite_url"])
    assert "unknown option(s) ['engine']" in await error_of(
        await client.get(url, params={"engine": "brightness"}), 400)
    assert "JPEG has no alpha channel" in await error_of(
        await client.get(url, params={"format": "jpeg", "background": "transparent"}), 400)
    assert "unknown matte" in await error_of(
        await client.get("/api/mattes/0123456789abcdef/composite"), 404)


@pytest.mark.asyncio
async def test_a_deleted_matte_is_gone_with_its_files(server_client: MakeClient,
                                                      tmp_path: Path) -> None:
    client = await server_client()
    kept = await keep(client, square_png()[0])
    folder = tmp_path / "jobs" / f"img-{kept['id']}"
    assert (folder / "matte.png").is_file()
    response = await client.delete(f"/api/mattes/{kept['id']}")
    assert response.status == 200
    assert not folder.exists()
    assert "unknown matte" in await error_of(await client.get(f"/api/mattes/{kept['id']}"), 404)


@pytest.mark.asyncio
async def test_a_video_is_refused_as_a_matte(server_client: MakeClient, tmp_path: Path) -> None:
    client = await server_client()
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=3)
    response = await client.post("/api/mattes", data=form(clip.read_bytes(), "clip.mp4"))
    assert "send videos to POST /api/jobs" in await error_of(response, 415)
    assert list((tmp_path / "jobs").iterdir()) == []  # nothing kept of a refused upload


def kept_at(matte_id: str, used_s: float, tmp_path: Path) -> KeptMatte:
    return KeptMatte(id=matte_id, dir=tmp_path / matte_id, image_path=tmp_path / "i",
                     matte_path=tmp_path / "m", filename="x.png", width=1, height=1,
                     engine="e", engine_detail="e", device="cpu", refine=False, elapsed_s=0.0,
                     used_s=used_s)


def test_the_store_pushes_out_the_least_recently_used(tmp_path: Path) -> None:
    store = MatteStore(keep=2, expiry_s=100.0)
    assert store.add(kept_at("a", 0.0, tmp_path)) == []
    assert store.add(kept_at("b", 1.0, tmp_path)) == []
    assert store.get("a", 2.0) is not None  # a is used again: b is now the oldest
    assert [k.id for k in store.add(kept_at("c", 3.0, tmp_path))] == ["b"]
    assert [k.id for k in store.all()] == ["a", "c"]


def test_the_store_forgets_what_was_not_used_for_the_expiry(tmp_path: Path) -> None:
    store = MatteStore(keep=KEEP_MATTES, expiry_s=10.0)
    store.add(kept_at("a", 0.0, tmp_path))
    store.add(kept_at("b", 5.0, tmp_path))
    assert store.get("a", 10.0) is None
    assert [k.id for k in store.expired(10.0)] == ["a"]
    assert [k.id for k in store.all()] == ["b"]


@pytest.mark.asyncio
async def test_the_poster_of_an_avi_job_is_its_frame_one_second_in(
        server_client: MakeClient, tmp_path: Path) -> None:
    client = await server_client(Engines(delay_s=0.02))
    clip = tmp_path / "clip.avi"
    make_video(clip, frames=120, size=(160, 120), fps=10, codec="mpeg4")
    job = await (await client.post("/api/jobs", data=form(clip.read_bytes(), "clip.avi"))).json()
    assert job["media"]["container"] == "avi"
    response = await client.get(f"/api/jobs/{job['id']}/poster")
    assert response.status == 200 and response.content_type == "image/jpeg"
    poster = cv2.cvtColor(decode(await response.read()), cv2.COLOR_BGR2RGB).astype(int)
    assert poster.shape == (120, 160, 3)
    # 1 s into a 12 s clip at 10 fps is frame 10 (the square moves 3 px a frame)
    errors = [np.abs(poster - square_frame(i, 160, 120)[0]).mean() for i in range(20)]
    assert int(np.argmin(errors)) == 10, errors
    assert "unknown job" in await error_of(await client.get("/api/jobs/nope/poster"), 404)


def operations(document: dict[str, object]) -> list[tuple[str, str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    return [(path, method) for path, item in paths.items() for method in item
            if method != "parameters"]


@pytest.mark.asyncio
async def test_the_api_page_shows_every_route_of_the_openapi_document(
        server_client: MakeClient) -> None:
    client = await server_client()
    document = await (await client.get("/api/openapi.json")).json()
    response = await client.get("/api/docs")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    for path, method in operations(document):
        anchor = f"{method}-" + re.sub(r"[{}]", "", path.strip("/").replace("/", "-"))
        section = page.split(f'id="{anchor}"', 1)[1].split("</section>", 1)[0]
        assert f"<code>{path}</code>" in section, (method, path)
        assert "<pre><code>curl " in section, (method, path)
    # the multipart fields of POST /api/jobs, with their choices
    jobs = page.split('id="post-api-jobs"', 1)[1].split("</section>", 1)[0]
    for field in ("file", "engine", "background_file", "format", "temporal", "refine"):
        assert f"<code>{field}</code>" in jobs
    assert "<code>prores4444</code>" in jobs
    # served by the package alone: no script, and nothing loaded from elsewhere
    assert "<script" not in page
    assert re.findall(r'(?:src|href)="([^"#]+)"', page) and all(
        url.startswith("/") for url in re.findall(r'(?:src|href)="([^"#]+)"', page))


@pytest.mark.asyncio
async def test_the_api_page_tells_a_token_server_how_to_send_it(
        server_client: MakeClient) -> None:
    client = await server_client(token="page-token-1")
    page = await (await client.get("/api/docs", headers={
        "Authorization": "Bearer page-token-1"})).text()
    assert 'curl -H "Authorization: Bearer $STREAMMATTE_TOKEN"' in html.unescape(page)


@pytest.mark.asyncio
async def test_the_api_page_curl_examples_run(server_client: MakeClient, tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (apt-get install curl)")
    client = await server_client()
    page = await (await client.get("/api/docs")).text()
    ok, photo = cv2.imencode(".jpg", np.full((48, 64, 3), 200, np.uint8))
    assert ok
    (tmp_path / "photo.jpg").write_bytes(photo.tobytes())
    ran = []
    for anchor in ("post-api-remove", "get-api-engines"):
        section = page.split(f'id="{anchor}"', 1)[1].split("</section>", 1)[0]
        command = re.search(r"<pre><code>(curl .*?)</code></pre>", section)
        assert command is not None
        # the page names its own address; the test server listens somewhere else
        line = command.group(1).replace("&#x27;", "'").replace("&quot;", '"')
        line = re.sub(r"http://[^/']+", str(client.make_url("")).rstrip("/"), line)
        # curl blocks, and the server runs in this test's event loop: run it beside the loop
        result = await asyncio.to_thread(
            subprocess.run, ["sh", "-c", line.replace("curl", f"{curl} -sf", 1)],
            cwd=tmp_path, capture_output=True, timeout=60)
        assert result.returncode == 0, (line, result.stderr)
        ran.append(line)
    assert decode((tmp_path / "result.png").read_bytes()).shape == (48, 64, 4)
    assert len(ran) == 2


def test_engines_say_what_they_are_good_for() -> None:
    settings = ServerSettings(engines=("u2netp", "mediapipe-selfie", "mog2"))
    engines = {e["name"]: e for e in EngineProvider.from_catalog(settings).describe()}
    assert (engines["u2netp"]["subject"], engines["u2netp"]["tier"]) == ("anything", "fastest")
    assert engines["mediapipe-selfie"]["subject"] == "people"
    assert engines["mog2"]["subject"] == "static camera"
    assert engines["mog2"]["good_for"] == "a static camera; video only"


def test_every_catalog_model_says_what_it_is_good_for() -> None:
    from streammatte.models.catalog import load_catalog

    missing = [s.name for s in load_catalog().values() if None in (s.good_for, s.subject, s.tier)]
    assert missing == []
