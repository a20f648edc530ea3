"""Use a running ``streammatte serve`` from a script, with the standard library only.

    streammatte serve &                      # prints http://127.0.0.1:8080/
    python samples/api_client.py photo.jpg clip.mp4 --server http://127.0.0.1:8080

Removes the background of the image (→ photo-nobg.png) and runs the video as a job to the end
(→ clip-nobg.webm), printing its progress. A server bound off loopback needs ``--token``.

A client keeps the session cookie the server sets on its first answer: ``GET /api/jobs``
lists only the jobs made with the same session (``Client.jobs()``).
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import mimetypes
import secrets
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class ApiError(RuntimeError):
    """The server answered with an error status; ``status`` and the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class Client:
    def __init__(self, server: str, token: str | None = None, timeout_s: float = 600) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        # the session cookie: the server lists a client's own jobs by it
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
        request = urllib.request.Request(self.server + path, data=body, method=method,
                                         headers=dict(headers or {}))
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                message = json.loads(raw)["error"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode("utf-8", "replace") or str(exc.reason)
            raise ApiError(exc.code, message) from None

    def _json(self, method: str, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> Any:
        raw, _ = self._request(method, path, body, headers)
        return json.loads(raw)

    @staticmethod
    def _multipart(file: Path, fields: dict[str, str]) -> tuple[bytes, str]:
        boundary = "streammatte-" + secrets.token_hex(12)
        parts: list[bytes] = []
        for name, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
                         f"\r\n\r\n{value}\r\n".encode())
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                     f'filename="{file.name}"\r\nContent-Type: {kind}\r\n\r\n'.encode())
        parts.append(file.read_bytes())
        parts.append(f"\r\n--{boundary}--\r\n".encode())
        return b"".join(parts), f"multipart/form-data; boundary={boundary}"

    def engines(self) -> list[str]:
        return [e["name"] for e in self._json("GET", "/api/engines")["engines"]]

    def remove_background(self, image: Path, **options: str) -> bytes:
        """The image with its background removed (PNG with alpha unless options say else)."""
        body, content_type = self._multipart(image, options)
        data, _ = self._request("POST", "/api/remove", body, {"Content-Type": content_type})
        return data

    def start_job(self, video: Path, **options: str) -> dict[str, Any]:
        body, content_type = self._multipart(video, options)
        job: dict[str, Any] = self._json("POST", "/api/jobs", body,
                                         {"Content-Type": content_type})
        return job

    def jobs(self) -> list[dict[str, Any]]:
        """The jobs this client started (its session's), oldest first."""
        jobs: list[dict[str, Any]] = self._json("GET", "/api/jobs")["jobs"]
        return jobs

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self._json("GET", f"/api/jobs/{job_id}")
        return job

    def wait(self, job_id: str, poll_s: float = 0.5, on_progress: Any = None) -> dict[str, Any]:
        """Poll until the job is done; a failed or cancelled job raises RuntimeError with the
        server's message."""
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["state"] == "done":
                return job
            if job["state"] in ("failed", "cancelled"):
                raise RuntimeError(f"job {job_id} {job['state']}: {job['error']}")
            time.sleep(poll_s)

    def download(self, job_id: str) -> bytes:
        data, _ = self._request("GET", f"/api/jobs/{job_id}/result")
        return data

    def delete(self, job_id: str) -> None:
        self._json("DELETE", f"/api/jobs/{job_id}")


def _show(job: dict[str, Any]) -> None:
    if job["state"] == "running" and job["progress"] is not None:
        eta = f"{job['eta_s']:.0f} s left" if job["eta_s"] is not None else "…"
        print(f"\r  {job['progress'] * 100:5.1f} %  {job['fps']:5.1f} fps  {eta}   ",
              end="", file=sys.stderr, flush=True)
    elif job["state"] == "queued":
        print(f"\r  queued (position {job['queue_position']})", end="", file=sys.stderr,
              flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", type=Path)
    parser.add_argument("video", type=Path, nargs="?")
    parser.add_argument("--server", default="http://127.0.0.1:8080")
    parser.add_argument("--token")
    parser.add_argument("--engine", help="default: the server's")
    parser.add_argument("--format", default="vp9", help="video format (vp9, h264, prores4444…)")
    parser.add_argument("--out-dir", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    client = Client(args.server, args.token)
    options = {"engine": args.engine} if args.engine else {}
    try:
        print(f"engines: {', '.join(client.engines())}", file=sys.stderr)
        png = client.remove_background(args.image, **options)
        out = args.out_dir / f"{args.image.stem}-nobg.png"
        out.write_bytes(png)
        print(f"wrote {out} ({len(png)} bytes)", file=sys.stderr)
        if args.video is not None:
            job = client.start_job(args.video, format=args.format, **options)
            print(f"job {job['id']}: {job['state']}", file=sys.stderr)
            done = client.wait(job["id"], on_progress=_show)
            print(file=sys.stderr)
            data = client.download(job["id"])
            suffix = {"vp9": ".webm", "prores4444": ".mov"}.get(args.format, ".mp4")
            out = args.out_dir / f"{args.video.stem}-nobg{suffix}"
            out.write_bytes(data)
            client.delete(job["id"])
            print(f"wrote {out}: {done['frames_done']} frames at {done['fps']:.1f} fps",
                  file=sys.stderr)
    except ApiError as exc:
        print(f"api_client: {exc}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"api_client: cannot reach {args.server}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
