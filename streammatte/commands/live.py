"""``streammatte live``: a camera (or a looped file) → background replaced → a virtual camera
that OBS, Zoom or a browser can pick. Newest frame wins: a slow engine drops frames, it never
falls behind. Stop with Ctrl-C."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..chain import Chain
from ..compose import parse_background
from ..errors import CancelledRun, ConfigError
from ..frames import FramePacket
from ..pipeline import Pipeline, PipelineStats
from ..progress import DownloadProgress
from ..sinks.virtualcam import VirtualCameraSink
from ..sources.camera import CameraSource, LoopedFileSource
from ..temporal import DEFAULT_LIVE_MODE, TEMPORAL_FILTERS, ShedUnderLoad
from .common import SubParsers, add_engine_options, config_from, hf_auth_tokens, parse_size


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("live", help="camera → background replaced → virtual camera",
                                   description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--camera", metavar="N|PATH",
                        help="camera index (0 → /dev/video0 on Linux) or device path")
    source.add_argument("--file", type=Path, metavar="VIDEO",
                        help="play this video in real time, looped, as if it were a camera")
    parser.add_argument("--size", type=parse_size, metavar="WxH",
                        help="camera mode to ask for (default: the camera's own)")
    parser.add_argument("--fps", type=float, help="camera rate to ask for")
    add_engine_options(parser)
    parser.add_argument("--background", "-b", default="blur",
                        help="blur (default), a colour (green, #00ff00) or an image/video path")
    parser.add_argument("--temporal", default=DEFAULT_LIVE_MODE, choices=sorted(TEMPORAL_FILTERS),
                        help=f"zero-lag smoothing of the matte (default: {DEFAULT_LIVE_MODE}; "
                        "adaptive is cheaper and suits a still camera; none: per frame)")
    parser.add_argument("--keep-smoothing", action="store_true",
                        help="keep --temporal while frames are being dropped (default: step "
                        "down flow → adaptive → none while the machine falls behind, and back "
                        "up once it keeps up)")
    vcam = parser.add_argument_group("virtual camera")
    vcam.add_argument("--vcam-device", metavar="DEV",
                      help="e.g. /dev/video10 (default: the first loopback device)")
    vcam.add_argument("--vcam-backend", metavar="NAME",
                      help="pyvirtualcam backend: v4l2loopback, obs, unitycapture")
    vcam.add_argument("--pixel-format", default="auto", choices=["auto", "I420", "NV12", "RGB"],
                      help="what to send (default: what the backend takes natively)")
    parser.add_argument("--duration-s", type=float, help="stop after this many seconds")
    parser.add_argument("--quiet", "-q", action="store_true", help="no status or summary")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # every engine option (--backend, --input-size, --short-side, --upsample, …) means what it
    # means for `streammatte video`: the same config builds the same chain
    config = config_from(args)
    background = parse_background(config.background)
    if background.is_transparent:
        raise ConfigError("a camera has no alpha channel: choose blur, a colour, an image or "
                          "a video as --background")
    source: CameraSource | LoopedFileSource
    if args.file is not None:
        source = LoopedFileSource(args.file)
    else:
        source = CameraSource(args.camera, size=args.size, fps=args.fps)
    with source:
        width, height = source.width, source.height
        fps = float(source.frame_rate or args.fps or 30)
        # open the virtual camera before the engine: a missing backend is the likeliest
        # problem and should be reported at once
        with VirtualCameraSink(width - width % 2, height - height % 2, fps,
                               device=args.vcam_device, backend=args.vcam_backend,
                               pixel_format=args.pixel_format) as sink:
            if not args.quiet:
                print(f"virtual camera {sink.device} ({sink.backend}, {sink.pixel_format}) "
                      f"{sink.width}×{sink.height} @ {fps:.3g} fps — Ctrl-C to stop",
                      file=sys.stderr)
            # the shedder watches the pipeline's drop count. The pipeline is built after the
            # chain that holds the shedder, so the name is bound late: the count is first read
            # on the first answered frame, when the pipeline is running
            shedder = None if args.keep_smoothing else ShedUnderLoad(
                config.temporal, lambda: pipeline.dropped,
                on_change=None if args.quiet else _say_shed)
            on_download = DownloadProgress(enabled=None if not args.quiet else False)
            with Chain(config, temporal=shedder, output="rgb", on_download=on_download,
                       auth_tokens=hf_auth_tokens()) as chain:

                def write(packet: FramePacket) -> None:
                    if packet.output is not None and (width % 2 or height % 2):
                        packet.output = packet.output[:sink.height, :sink.width]
                    sink.write(packet)

                deadline = _Deadline(args.duration_s) if args.duration_s else None
                pipeline = Pipeline(source, chain.stages(write), max_queue_frames=1,
                                    back_pressure="latest", cancel=deadline)
                stats = _run_until_stopped(pipeline, args.quiet)
    if not args.quiet:
        print(f"\nsent {stats.frames_out} frames in {stats.elapsed_s:.1f} s "
              f"({stats.fps:.1f} fps), dropped {stats.dropped} of {stats.frames_in} "
              f"with {chain.engine.describe()}", file=sys.stderr)
        for note in chain.run_notes(stats):
            print(f"note: {note}", file=sys.stderr)
        if shedder is not None and shedder.mode != config.temporal:
            print(f"smoothing ended at {shedder.mode} ({config.temporal} was shed to keep up; "
                  "--keep-smoothing keeps it)", file=sys.stderr)
    return 0


def _say_shed(old: str, new: str, down: bool) -> None:
    why = "frames are being dropped" if down else "keeping up again"
    print(f"\nsmoothing {old} → {new}: {why}", file=sys.stderr)


class _Deadline:
    """``--duration-s`` as a cancel handle: set once the time is up."""

    def __init__(self, duration_s: float) -> None:
        self._end = time.monotonic() + duration_s

    def is_set(self) -> bool:
        return time.monotonic() >= self._end


def _run_until_stopped(pipeline: Pipeline, quiet: bool) -> PipelineStats:
    def progress(stats: PipelineStats) -> None:
        if not quiet and sys.stderr.isatty():
            print(f"\r{stats.frames_out} frames, {stats.fps:.1f} fps, dropped {stats.dropped}",
                  end="", file=sys.stderr)

    try:
        return pipeline.run(progress, progress_interval_s=1.0)
    except (CancelledRun, KeyboardInterrupt):
        # Ctrl-C or --duration-s is how a live run ends: not an error
        return pipeline.stats
