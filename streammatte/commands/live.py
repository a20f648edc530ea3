"""``streammatte live``: a camera (or a looped file) → background replaced → a virtual camera
that OBS, Zoom or a browser can pick. Newest frame wins: a slow engine drops frames, it never
falls behind. Stop with Ctrl-C."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from ..api import Matter, build_stages
from ..compose import Compositor, parse_background
from ..errors import ConfigError
from ..frames import FramePacket
from ..inference import open_engine
from ..pipeline import CancelledRun, Pipeline, PipelineStats
from ..sinks.virtualcam import VirtualCameraSink
from ..sources.camera import CameraSource, LoopedFileSource
from ..temporal import DEFAULT_LIVE_MODE, TEMPORAL_FILTERS, ShedUnderLoad
from .common import SubParsers, add_engine_options, models_dir_from, parse_size


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
    background = parse_background(args.background)
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
            engine = open_engine(args.engine, model_file=args.model_file,
                                 models_dir=models_dir_from(args), device=args.device)
            compositor = Compositor(background, "rgb")
            try:
                matter = Matter(engine, temporal=args.temporal, rembg_compat=args.rembg_compat)
                # the shedder watches the pipeline's drop count. The pipeline is built after
                # the stages that hold the shedder, so the name is bound late: the count is
                # first read on the first answered frame, when the pipeline is running
                shedder = None if args.keep_smoothing else ShedUnderLoad(
                    args.temporal, lambda: pipeline.dropped,
                    on_change=None if args.quiet else _say_shed)
                if shedder is not None:
                    matter.temporal = shedder

                def write(packet: FramePacket) -> None:
                    if packet.output is not None and (width % 2 or height % 2):
                        packet.output = packet.output[:sink.height, :sink.width]
                    sink.write(packet)

                pipeline = Pipeline(source, build_stages(matter, compositor, write, 1),
                                    max_queue_frames=1, back_pressure="latest")
                stats = _run_until_stopped(pipeline, args.duration_s, args.quiet)
            finally:
                compositor.close()
                engine.close()
    if not args.quiet:
        print(f"\nsent {stats.frames_out} frames in {stats.elapsed_s:.1f} s "
              f"({stats.fps:.1f} fps), dropped {stats.dropped} of {stats.frames_in} "
              f"with {engine.describe()}", file=sys.stderr)
        if shedder is not None and shedder.mode != args.temporal:
            print(f"smoothing ended at {shedder.mode} ({args.temporal} was shed to keep up; "
                  "--keep-smoothing keeps it)", file=sys.stderr)
    return 0


def _say_shed(old: str, new: str, down: bool) -> None:
    why = "frames are being dropped" if down else "keeping up again"
    print(f"\nsmoothing {old} → {new}: {why}", file=sys.stderr)


def _run_until_stopped(pipeline: Pipeline, duration_s: float | None, quiet: bool
                       ) -> PipelineStats:
    timer = threading.Timer(duration_s, pipeline.cancel) if duration_s else None
    if timer is not None:
        timer.daemon = True
        timer.start()

    def progress(stats: PipelineStats) -> None:
        if not quiet and sys.stderr.isatty():
            print(f"\r{stats.frames_out} frames, {stats.fps:.1f} fps, dropped {stats.dropped}",
                  end="", file=sys.stderr)

    try:
        return pipeline.run(progress, progress_interval_s=1.0)
    except (CancelledRun, KeyboardInterrupt):
        # Ctrl-C or --duration-s is how a live run ends: not an error
        return pipeline.stats
    finally:
        if timer is not None:
            timer.cancel()
