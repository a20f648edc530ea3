"""Drive Debian's headless chromium over the DevTools protocol, with aiohttp's websocket client.

No browser download, no Playwright: the system's ``chromium`` (``apt-get install chromium``)
is started with a throw-away profile and reached through its DevTools websocket. Pages are
attached as flattened sessions on the browser's one socket.

    async with Chromium.launch(tmp_path) as browser:
        page = await browser.new_page()
        await page.goto(url)
        await page.set_files("#file-input", [path])
        await page.wait_for("document.body.dataset.state === 'done'")
        await page.screenshot(artifacts_dir / "page.png")
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio",
    "--password-store=basic", "--use-mock-keychain", "--window-size=1280,900",
)


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The chromium executable; installed with apt-get when missing and we may (root, as in
    CI; STREAMMATTE_NO_APT=1 forbids it), else skip the test saying how to get one."""
    found = find_chromium()
    if found is None and os.environ.get("STREAMMATTE_NO_APT") != "1" and \
            shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       capture_output=True, timeout=600, check=False)
        found = find_chromium()
    if found is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); "
                    "the real-browser tests need it")
    return found


class BrowserError(RuntimeError):
    """A DevTools command failed, or the page did not reach the expected state."""


class Connection:
    """One DevTools websocket: commands with ids, events to listeners."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                for listener in list(self._listeners):
                    listener(data)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BrowserError("the browser closed its DevTools socket"))

    async def send(self, method: str, params: dict[str, Any] | None = None,
                   session_id: str | None = None, timeout_s: float = 30.0) -> dict[str, Any]:
        command_id = next(self._ids)
        message: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        await self._ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(future, timeout_s)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def listen(self, listener: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.append(listener)

    async def wait_event(self, method: str, predicate: Callable[[dict[str, Any]], bool]
                         = lambda params: True, timeout_s: float = 30.0) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def listener(event: dict[str, Any]) -> None:
            if event.get("method") == method and not future.done() \
                    and predicate(event.get("params", {})):
                future.set_result(event.get("params", {}))

        self._listeners.append(listener)
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._listeners.remove(listener)

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Page:
    """One tab, attached as a flattened session."""

    def __init__(self, connection: Connection, session_id: str) -> None:
        self.connection = connection
        self.session_id = session_id
        #: console errors and uncaught exceptions, to assert a page ran cleanly
        self.errors: list[str] = []
        connection.listen(self._on_event)

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("sessionId") != self.session_id:
            return
        params = event.get("params", {})
        if event.get("method") == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(details.get("exception", {}).get("description")
                               or details.get("text", "exception"))
        elif event.get("method") == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                        for a in params.get("args", [])))

    async def send(self, method: str, params: dict[str, Any] | None = None,
                   timeout_s: float = 30.0) -> dict[str, Any]:
        return await self.connection.send(method, params, self.session_id, timeout_s)

    async def goto(self, url: str, timeout_s: float = 30.0) -> None:
        loaded = asyncio.ensure_future(self.connection.wait_event(
            "Page.loadEventFired", timeout_s=timeout_s))
        reply = await self.send("Page.navigate", {"url": url})
        if reply.get("errorText"):
            loaded.cancel()
            raise BrowserError(f"{url}: {reply['errorText']}")
        await loaded

    async def evaluate(self, expression: str, timeout_s: float = 30.0) -> Any:
        """The JSON value of ``expression`` (promises are awaited)."""
        reply = await self.send("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True,
        }, timeout_s)
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            raise BrowserError(f"{expression!r} threw: "
                               f"{details.get('exception', {}).get('description') or details}")
        return reply.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout_s: float = 60.0,
                       interval_s: float = 0.1) -> Any:
        """Poll until ``expression`` is truthy; its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                state = await self.evaluate(
                    "JSON.stringify({state: document.body && document.body.dataset.state, "
                    "error: (document.getElementById('problem-text') || "
                    "document.getElementById('error') || {}).textContent})")
                raise BrowserError(f"timed out after {timeout_s} s waiting for {expression!r} "
                                   f"(page: {state}, errors: {self.errors})")
            await asyncio.sleep(interval_s)

    async def _node(self, selector: str) -> int:
        document = await self.send("DOM.getDocument", {"depth": 0})
        found = await self.send("DOM.querySelector", {
            "nodeId": document["root"]["nodeId"], "selector": selector})
        if not found.get("nodeId"):
            raise BrowserError(f"no element matches {selector!r}")
        node: int = found["nodeId"]
        return node

    async def set_files(self, selector: str, files: list[Path]) -> None:
        """Choose ``files`` in the ``<input type=file>`` at ``selector`` (fires change)."""
        node = await self._node(selector)
        await self.send("DOM.setFileInputFiles", {
            "nodeId": node, "files": [str(Path(f).resolve()) for f in files]})

    async def drop_files(self, selector: str, files: list[Path]) -> None:
        """Drag ``files`` from outside the page and drop them on the element at ``selector``."""
        box = await self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        x, y = box
        data = {"items": [], "files": [str(Path(f).resolve()) for f in files],
                "dragOperationsMask": 1}
        for kind in ("dragEnter", "dragOver", "drop"):
            await self.send("Input.dispatchDragEvent", {"type": kind, "x": x, "y": y,
                                                        "data": data})

    async def click(self, selector: str) -> None:
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    async def press(self, key: str, code: str, key_code: int) -> None:
        """Press and release one key on the focused element, as the keyboard would."""
        for kind in ("rawKeyDown", "keyUp"):
            await self.send("Input.dispatchKeyEvent", {
                "type": kind, "key": key, "code": code, "windowsVirtualKeyCode": key_code})

    async def tab(self) -> None:
        """Move the focus on with the Tab key (the page sees a keyboard user)."""
        await self.send("Input.dispatchKeyEvent", {"type": "rawKeyDown", "key": "Tab",
                                                   "code": "Tab", "windowsVirtualKeyCode": 9})
        await self.send("Input.dispatchKeyEvent", {"type": "char", "text": "\t"})
        await self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": "Tab", "code": "Tab",
                                                   "windowsVirtualKeyCode": 9})

    async def pixels(self, selector: str) -> Any:
        """What the screen shows of the element at ``selector``: an RGB uint8 array."""
        import cv2
        import numpy as np

        box = await self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + scrollX, r.y + scrollY, r.width, r.height];"
            " })()")
        shot = await self.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": box[0], "y": box[1], "width": box[2], "height": box[3], "scale": 1}})
        bgr = cv2.imdecode(np.frombuffer(base64.b64decode(shot["data"]), np.uint8),
                           cv2.IMREAD_COLOR)
        if bgr is None:
            raise BrowserError(f"the screenshot of {selector!r} did not decode")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    async def unnamed_controls(self) -> list[str]:
        """Controls a screen reader would announce without a name (role and DOM id)."""
        await self.send("Accessibility.enable")
        tree = await self.send("Accessibility.getFullAXTree")
        roles = {"button", "checkbox", "combobox", "slider", "textbox", "link", "radio",
                 "spinbutton", "searchbox", "listbox", "switch", "ColorWell"}
        missing = []
        for node in tree["nodes"]:
            role = node.get("role", {}).get("value")
            if node.get("ignored") or role not in roles:
                continue
            if not str(node.get("name", {}).get("value", "")).strip():
                described = await self.send("DOM.describeNode", {
                    "backendNodeId": node["backendDOMNodeId"]})
                attributes = described["node"].get("attributes", [])
                named = dict(zip(attributes[::2], attributes[1::2], strict=True))
                missing.append(f"{role} {named}")
        return missing

    async def screenshot(self, path: Path) -> Path:
        shot = await self.send("Page.captureScreenshot", {"format": "png",
                                                          "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


class Chromium:
    """A headless chromium with its own profile; ``launch`` it as an async context manager."""

    def __init__(self, process: subprocess.Popen[bytes], session: aiohttp.ClientSession,
                 connection: Connection, profile: Path) -> None:
        self.process = process
        self.session = session
        self.connection = connection
        self.profile = profile

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls, workdir: Path, *, executable: str | None = None,
                     extra_flags: tuple[str, ...] = (), timeout_s: float = 60.0
                     ) -> AsyncIterator[Chromium]:
        binary = executable or require_chromium()
        profile = workdir / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        log = (workdir / "chromium.log").open("wb")
        process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile}",
             "--remote-debugging-port=0", "about:blank"],
            stdout=log, stderr=subprocess.STDOUT)
        session: aiohttp.ClientSession | None = None
        browser: Chromium | None = None
        try:
            port_file = profile / "DevToolsActivePort"
            deadline = time.monotonic() + timeout_s
            while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
                if process.poll() is not None:
                    raise BrowserError(f"chromium exited with {process.returncode}; see "
                                       f"{workdir / 'chromium.log'}")
                if time.monotonic() > deadline:
                    raise BrowserError(f"chromium did not open DevTools in {timeout_s} s")
                await asyncio.sleep(0.05)
            port, path = port_file.read_text().splitlines()[:2]
            session = aiohttp.ClientSession()
            ws = await session.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0)
            browser = cls(process, session, Connection(ws), profile)
            yield browser
        finally:
            if browser is not None:
                with contextlib.suppress(Exception):
                    await browser.connection.send("Browser.close", timeout_s=5)
                await browser.connection.close()
            if session is not None:
                await session.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            log.close()

    async def new_page(self, width: int = 1280, height: int = 900, *,
                       mobile: bool = False) -> Page:
        """A new tab ``width`` × ``height`` CSS pixels; ``mobile`` emulates a phone (the
        viewport meta tag applies, scrollbars overlay the page)."""
        target = await self.connection.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.connection.send("Target.attachToTarget", {
            "targetId": target["targetId"], "flatten": True})
        page = Page(self.connection, attached["sessionId"])
        for domain in ("Page", "Runtime", "DOM"):
            await page.send(f"{domain}.enable")
        await page.send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
        return page

    async def allow_downloads(self, folder: Path) -> None:
        """Save downloads into ``folder`` under their own names; progress events are on."""
        folder.mkdir(parents=True, exist_ok=True)
        await self.connection.send("Browser.setDownloadBehavior", {
            "behavior": "allow", "downloadPath": str(folder), "eventsEnabled": True})

    async def wait_download(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """The next download's progress event once it has completed."""
        return await self.connection.wait_event(
            "Browser.downloadProgress", lambda p: p.get("state") in ("completed", "canceled"),
            timeout_s)
