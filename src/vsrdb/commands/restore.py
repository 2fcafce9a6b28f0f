"""``vsrdb restore``: the command line over restoration jobs and batches (``vsrdb.restore``)."""

from __future__ import annotations

import argparse
import sys
import time
from fractions import Fraction

import torch

from ..checkpoints import BUILTIN, load_checkpoint, native_scales
from ..devices import pick_device, use_heap_allocator
from ..errors import InputError, printable
from ..ops import kernels
from ..precision import resolve_precision
from ..restore.batch import ProgressFile, run_jobs, threads_for
from ..restore.dist import Dist
from ..restore.inputs import expand_inputs
from ..restore.job import RestoreOptions, check_not_input, work_folder
from ..restore.restorer import Restorer
from ..video import CODECS, MAX_FPS, MIN_FPS, OUTPUT_CONTAINERS, check_output_path
from ..video.y4m import PIPE
from .common import (
    add_deflicker_argument,
    add_device_argument,
    add_output_flags,
    add_precision_argument,
    positive_int,
    quiet_stdout,
)

__all__ = ["add_subcommand"]

def _fps(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a frame rate (e.g. 24, 29.97 or 30000/1001)") from None
    if not MIN_FPS <= value <= MAX_FPS:
        raise argparse.ArgumentTypeError(f"{text} must be from {float(MIN_FPS):g} to {float(MAX_FPS):g} frames per "
                                         "second")
    return value.limit_denominator(1001 * 1000)


def _gigabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GB") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 GB")
    return value


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    exts = ", ".join(sorted(OUTPUT_CONTAINERS))
    p = sub.add_parser(
        "restore", help="restore blurry low-resolution videos (or frame folders) at x4",
        description="Restore every frame of video files or frame folders. With one input, OUTPUT is a video file "
                    f"({exts}) or, without an extension, a folder of PNG frames. With several inputs or a folder "
                    "of videos, OUTPUT is a folder and each output is named after its input. Sound, subtitles, "
                    "chapters, colour tags, timestamps and bit depth are kept. Under torchrun the work is "
                    "shared by all processes.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video file (anything FFmpeg decodes), folder of png/jpg/tif frames, or folder of videos; "
                        "'-' reads a YUV4MPEG2 stream from standard input (ffmpeg ... -f yuv4mpegpipe -)")
    p.add_argument("-o", "--output", required=True,
                   help="output video file or PNG folder; a folder for batches; '-' writes to standard output "
                        "(YUV4MPEG2, or --format mkv)")
    p.add_argument("--format", choices=("y4m", "mkv"),
                   help="with -o -: YUV4MPEG2 (default; for x264/x265 --y4m, ffmpeg, mpv) or a streamable Matroska "
                        "encoded with --codec")
    p.add_argument("--weights", help="checkpoint folder (ours or the authors' model_D/R_best.pt), or a built-in "
                                     "model: 'builtin' (real footage, the default) or 'builtin-clean' (input "
                                     "degraded the REDS way only); vsrdb info lists them")
    add_device_argument(p)
    add_precision_argument(p)
    p.add_argument("--codec", choices=sorted(set(CODECS) | {"hevc"}),
                   help="video codec (default h264; vp9 for .webm); 10-bit sources give 10-bit output")
    p.add_argument("--pix-fmt", help="encoder pixel format, e.g. yuv420p, yuv420p10le, yuv444p")
    p.add_argument("--crf", type=int, help="quality for lossy codecs (default 18 for h264/h265, 30 for av1/vp9)")
    p.add_argument("--lossless", action="store_true",
                   help="lossless RGB at the source's depth (h264 8-bit; h265 or ffv1 for deeper sources)")
    p.add_argument("--no-audio", action="store_true", help="drop sound (subtitles, chapters and metadata stay)")
    p.add_argument("--fps", type=_fps, help="frame rate of frame-folder inputs (default 30)")
    p.add_argument("--ext", help="batches: output extension for every input (default: the input's own container, "
                                 "else .mkv); 'png' for frame folders")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--outscale", type=_outscale, metavar="S",
                      help="output size = input size x S, any factor from 1 to the model's scale (default: the "
                           "model's), e.g. 2 for a 1080p input gives 4K, not 8K; a built-in model that ships at "
                           "several scales runs at the smallest that reaches it, and a larger output is shrunk "
                           "with area averaging as frames are restored")
    size.add_argument("--size", type=_size, metavar="WxH",
                      help="output frame size, at most the model's output (the native scale is picked as for "
                           "--outscale; area averaging when shrinking)")
    p.add_argument("--scale", type=int, choices=(1, 2, 4),
                   help="run the built-in model at this native scale (default: picked from --outscale/--size); "
                        "with a checkpoint folder, its own scale")
    p.add_argument("--tile", type=positive_int, help="LR tile size in pixels (default: from the memory available)")
    p.add_argument("--overlap", type=int, default=8, help="LR pixels shared by neighbouring tiles (default 8)")
    add_deflicker_argument(p)
    p.add_argument("--max-memory", type=_gigabytes,
                   help="GB for one tile's forward pass (default: 80%% of free GPU memory; on CPU "
                        "min(half the available memory, 0.5))")
    p.add_argument("--segment", type=positive_int, default=100,
                   help="frames per work unit: the pieces that resume and parallel runs deal in (default 100)")
    p.add_argument("--threads", type=positive_int, help="CPU threads per process (default: all cores, shared "
                                                          "among torchrun's processes)")
    p.add_argument("--resume", action="store_true", help="continue the unfinished work of a killed run")
    p.add_argument("--restart", action="store_true", help="discard the unfinished work of an earlier run")
    p.add_argument("--progress-file", metavar="FILE",
                   help="also write progress as JSON to FILE (frames done and planned; for vsrdb serve and "
                        "scripts that watch a run)")
    add_output_flags(p, "outputs that exist (never an input)")
    p.set_defaults(func=_cmd_restore)


def _outscale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value == value or value < 1:  # NaN included
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1 (and at most the model's scale)")
    return value


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 1920x1080") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"{text}: width and height must be at least 1")
    return w, h


def _cmd_restore(args: argparse.Namespace) -> int:
    from ..interrupts import die_with_parent_if_asked

    die_with_parent_if_asked()
    if args.resume and args.restart:
        raise InputError("--resume and --restart exclude each other")
    if PIPE in args.inputs or args.output == PIPE:
        return _restore_pipe(args)
    if args.format:
        raise InputError(f"--format {args.format}: is for -o - (standard output); a file's extension says its format")
    if args.overlap < 0:
        raise InputError(f"--overlap {args.overlap}: must be 0 or more")
    pairs, batch = expand_inputs(args.inputs, args.output, ext=args.ext,
                                 warn=lambda text: print(f"note: {printable(text)}", file=sys.stderr)
                                 if Dist.from_env().rank == 0 else None)
    # The outputs' checks come before the model loads (each job repeats them).
    if not batch:
        check_not_input(pairs[0][1], [pairs[0][0]])
        out, _ = check_output_path(pairs[0][1], overwrite=args.overwrite)
    else:
        for inp, out in pairs:
            if out.exists() and args.overwrite:
                check_not_input(out, [inp])
    dist = Dist.from_env()
    device = pick_device(args.device, local_rank=dist.local_rank if dist.world > 1 else None)
    threads = args.threads or threads_for(dist, device)
    if threads:
        torch.set_num_threads(threads)
    precision = resolve_precision(args.precision, device)
    if dist.rank == 0 and not args.quiet:
        print(f"vsrdb restore: {precision.describe()}", file=sys.stderr)
    _prepare_kernels(device, quiet=args.quiet or dist.rank != 0)
    model = _load_model(args, [inp for inp, _ in pairs], quiet=args.quiet or dist.rank != 0)
    use_heap_allocator()
    max_memory = None if args.max_memory is None else int(args.max_memory * (1 << 30))
    opts = RestoreOptions(codec=args.codec, pix_fmt=args.pix_fmt, crf=args.crf, lossless=args.lossless,
                          audio=not args.no_audio, fps=args.fps, segment=args.segment, tile=args.tile,
                          overlap=args.overlap, max_memory=max_memory, precision=precision.name,
                          outscale=args.outscale, size=args.size, deflicker=args.deflicker)
    dist.start()
    try:
        started = time.perf_counter()
        try:
            results = run_jobs(pairs, model, opts, batch=batch, device=args.device, overwrite=args.overwrite,
                               resume=args.resume, restart=args.restart, progress=not args.quiet, dist=dist,
                               progress_file=ProgressFile(args.progress_file) if args.progress_file and
                               dist.rank == 0 else None)
        except KeyboardInterrupt:
            works = [work_folder(out) for _, out in pairs if work_folder(out).exists()]
            if works:
                print(f"vsrdb restore: interrupted; finished work is kept in {printable(str(works[0]))}"
                      f"{f' and {len(works) - 1} more' if len(works) > 1 else ''}: rerun with --resume to "
                      "continue", file=sys.stderr)
            raise
        if dist.rank != 0:
            return 0 if all(r.status != "failed" for r in results) else 1
        elapsed = time.perf_counter() - started
        for r in results:
            shown_out, shown_in = printable(r.output), printable(r.input)
            if r.status == "done":
                resumed = f" ({r.restored} restored in this run)" if r.restored < r.frames else ""
                print(f"wrote {shown_out}: {r.frames} frames{resumed}, {r.seconds / max(r.restored, 1):.2f} s/frame"
                      if r.restored else f"wrote {shown_out}: {r.frames} frames (all restored by an earlier run)")
            elif r.status == "skipped":
                print(f"skipped {shown_in}: {shown_out} exists (--overwrite replaces it)")
            else:
                print(f"failed {shown_in}: {printable(r.message)}", file=sys.stderr)
        failed = sum(r.status == "failed" for r in results)
        if batch:
            done = sum(r.status == "done" for r in results)
            skipped = sum(r.status == "skipped" for r in results)
            print(f"{done} restored, {skipped} skipped, {failed} failed in {elapsed:.1f} s"
                  + (f" on {dist.world} processes" if dist.world > 1 else ""))
        return 1 if failed else 0
    finally:
        dist.stop()


def _prepare_kernels(device: torch.device, *, quiet: bool) -> None:
    """vsrdb's CPU kernels (ops/kernels.py) built or loaded before the first frame."""
    if device.type != "cpu":
        return
    say = (lambda text: None) if quiet else (lambda text: print(f"vsrdb restore: {printable(text)}", file=sys.stderr))
    if not kernels.prepare(note=say) and kernels.why_not() != "VSRDB_KERNELS=0":
        say(f"note: vsrdb's CPU kernels are not in use ({kernels.why_not()}); PyTorch's slower forms run instead")


def _load_model(args: argparse.Namespace, inputs: list, *, quiet: bool):
    """The model to run: ``--weights`` (default the built-in), at the native scale ``--scale``
    forces or the output size asks for. ``inputs``: paths, or (height, width) of an open stream;
    their sizes are read only for ``--size`` with weights that ship at several scales."""
    from ..restore.scales import check_scale, needed_scale, pick_weights

    weights = args.weights or BUILTIN
    sizes = (inputs if all(isinstance(x, tuple) for x in inputs) else _input_sizes(inputs)) \
        if args.size is not None and native_scales(weights) else []
    chosen, why = pick_weights(weights, scale=args.scale, needed=needed_scale(args.outscale, args.size, sizes))
    model = load_checkpoint(chosen)
    check_scale(model.scale, weights, args.scale)
    if why and not quiet:
        print(f"vsrdb restore: {why}", file=sys.stderr)
    return model


def _input_sizes(paths: list) -> list[tuple[int, int]]:
    """(height, width) of each input that opens; one that does not fails in its own job later."""
    from ..video import open_frames

    sizes = []
    for path in paths:
        try:
            with open_frames(path) as source:
                sizes.append((source.height, source.width))
        except (InputError, OSError):
            continue
    return sizes


def _restore_pipe(args: argparse.Namespace) -> int:
    """``-`` as the input or the output: one stream straight through, no work folder (see
    ``vsrdb.restore.stream``). Everything that needs files is refused up front."""
    from tqdm import tqdm

    from ..restore.stream import open_sink, output_shape, restore_stream, stdin_source
    from ..video import open_frames

    if len(args.inputs) > 1:
        raise InputError("a pipe carries one stream: give one input (- for standard input)")
    for flag, on in (("--resume", args.resume), ("--restart", args.restart)):
        if on:
            raise InputError(f"{flag}: a pipe keeps no work to resume (it is read once); restore a file to use it")
    if Dist.from_env().world > 1:
        raise InputError("torchrun deals a file's segments out to its processes; a pipe is one stream: run one process")
    if args.ext or args.progress_file:
        raise InputError(f"{'--ext' if args.ext else '--progress-file'}: is for files, not a pipe")
    to_stdout = args.output == PIPE
    container = args.format or "y4m"
    if args.format and not to_stdout:
        raise InputError(f"--format {args.format}: is for -o - (standard output); a file's extension says its format")
    if to_stdout and sys.stdout.isatty():
        raise InputError("standard output is a terminal: pipe it into a program (| x265 --y4m - ...) or a file")
    if to_stdout and container == "y4m" and (args.codec or args.pix_fmt or args.crf is not None or args.lossless):
        raise InputError("--codec/--pix-fmt/--crf/--lossless encode video; YUV4MPEG2 is raw: use --format mkv")
    if args.inputs[0] == PIPE and sys.stdin.isatty():
        raise InputError("standard input is a terminal: pipe a YUV4MPEG2 stream in (ffmpeg -i IN -f yuv4mpegpipe -)")
    say = (lambda text: print(text, file=sys.stderr)) if to_stdout else print  # standard output carries video
    source = stdin_source() if args.inputs[0] == PIPE else open_frames(args.inputs[0], fps=args.fps)
    with source:
        container_streams = getattr(getattr(source, "container", None), "streams", None)
        if to_stdout and container_streams is not None and container_streams.audio and not args.no_audio:
            raise InputError(f"{source.path}: has sound, which a pipe output does not carry; add --no-audio, or "
                             "write a file")
        device = pick_device(args.device)
        if args.threads:
            torch.set_num_threads(args.threads)
        precision = resolve_precision(args.precision, device)
        if not args.quiet:
            print(f"vsrdb restore: {precision.describe()}", file=sys.stderr)
        _prepare_kernels(device, quiet=args.quiet)
        model = _load_model(args, [(source.height, source.width)], quiet=args.quiet)
        use_heap_allocator()
        opts = RestoreOptions(codec=args.codec, pix_fmt=args.pix_fmt, crf=args.crf, lossless=args.lossless,
                              audio=False, fps=args.fps, tile=args.tile, overlap=args.overlap,
                              max_memory=None if args.max_memory is None else int(args.max_memory * (1 << 30)),
                              precision=precision.name, outscale=args.outscale, size=args.size,
                              deflicker=args.deflicker)
        restorer = Restorer(model, device=device, precision=precision, tile=args.tile, overlap=args.overlap,
                            max_memory=opts.max_memory, deflicker=opts.deflicker)
        size = output_shape(source, restorer, opts, args.output, container)
        sink = open_sink(args.output, source, opts, size=size, overwrite=args.overwrite, container=container,
                         stdout=sys.stdout.buffer)
        bar = tqdm(desc=printable(str(source.path)), unit="frame", disable=args.quiet, file=sys.stderr,
                   dynamic_ncols=True)
        started = time.perf_counter()
        done = [0]

        def on_frame() -> None:
            done[0] += 1
            bar.update(1)

        try:
            with bar:
                frames = restore_stream(source, sink, restorer, size=size, on_frame=on_frame)
        except BrokenPipeError:
            quiet_stdout()
            raise InputError(f"standard output: the program reading it closed the pipe after {done[0]} frames") \
                from None
    name = "standard output" if to_stdout else printable(args.output)
    say(f"wrote {name}: {frames} frames, {(time.perf_counter() - started) / frames:.2f} s/frame")
    return 0
