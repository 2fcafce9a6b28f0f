"""Reports of an evaluation run: a Markdown table and a self-contained HTML page.

The HTML page embeds everything (images as data URIs), so it can be mailed or attached to
an issue. For each chosen frame it shows a before/after slider (any two of: blurry input,
each method's output, ground truth), zoomed crops of the most detailed region, per-method
error maps, and the pictures the first model's family draws of its internals
(``diagnostic_maps``; FMA-Net: image flows and FGDF kernels, the paper's Figs. 10 and 11).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data.resize import imresize
from ..files import mark_output_folder, write_atomically
from ..models.family import RestorationModel
from ..ops.pictures import ERROR_RANGE, detail_crop, error_map
from ..video import to_array
from .runs import MethodResult
from .scoring import MOTION_BINS, ScoreOptions

__all__ = ["markdown_tables", "write_report", "model_maps"]


@torch.no_grad()
def model_maps(model: RestorationModel, window: list[Tensor], *, crop: int = 64) -> dict[str, np.ndarray]:
    """The model family's diagnostic pictures (``RestorationModel.diagnostic_maps``) on one LR window.

    ``window``: T RGB frames ``[3, H, W]``. Runs on a ``crop`` x ``crop`` region at the window's
    centre: maps of a whole large frame are neither needed nor cheap.
    """
    h, w = window[0].shape[-2:]
    ch, cw = min(crop, h), min(crop, w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    x = torch.stack([f[:, y0:y0 + ch, x0:x0 + cw] for f in window], dim=1)[None].float()  # [1, 3, T, h, w]
    if model.channel_order == "BGR":
        x = x.flip(1)
    inputs = {}
    if model.input_flow is not None:
        from ..data.flow import initial_flows

        inputs["flows"] = initial_flows(x, model.input_flow)
    return model.eval().diagnostic_maps(x, **inputs)


# ---------------------------------------------------------------- tables

def _fmt(v, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def _summary_rows(results: list[MethodResult]) -> list[list[str]]:
    rows = []
    for r in results:
        j = r.to_json()
        a = j["average"]
        rows.append([r.name, f"{r.parameters:,d}" if r.parameters else "-", _fmt(a["psnr"], 2), _fmt(a["ssim"], 4),
                     _fmt(a["tof"], 3), str(a["frames"]), _fmt(r.seconds_per_frame, 3),
                     _fmt(r.peak_memory_mb, 0)])
    return rows


SUMMARY_HEADER = ["method", "parameters", "PSNR (dB)", "SSIM", "tOF", "frames", "s / frame", "peak MB"]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _clip_rows(results: list[MethodResult]) -> tuple[list[str], list[list[str]]]:
    header = ["clip"] + [f"{r.name} PSNR / SSIM / tOF" for r in results]
    names = list(results[0].scores)
    rows = []
    for name in names:
        row = [name]
        for r in results:
            s = r.scores[name].summary()
            row.append(f"{_fmt(s['psnr'], 2)} / {_fmt(s['ssim'], 4)} / {_fmt(s['tof'], 3)}")
        rows.append(row)
    return header, rows


def _motion_rows(results: list[MethodResult]) -> tuple[list[str], list[list[str]]]:
    labels = [label for _, _, label in MOTION_BINS]
    header = ["method"] + [f"motion {b} px" for b in labels]
    rows = []
    for r in results:
        bins = r.to_json()["motion_bins"]
        rows.append([r.name] + [f"{_fmt(bins[b]['psnr'], 2)} / {_fmt(bins[b]['tof'], 3)} ({bins[b]['frames']})"
                                if b in bins else "-" for b in labels])
    return header, rows


def _exposure_rows(results: list[MethodResult]) -> tuple[list[str], list[list[str]]]:
    """Per exposure level (duty cycle 5:N), PSNR / SSIM / tOF; empty without labels."""
    per = [r.to_json().get("exposure_levels", {}) for r in results]
    levels = sorted({k for p in per for k in p})
    rows = [[r.name] + [f"{_fmt(p[k]['psnr'], 2)} / {_fmt(p[k]['ssim'], 4)} / {_fmt(p[k]['tof'], 3)}"
                        if k in p else "-" for k in levels] for r, p in zip(results, per)]
    return ["method"] + [f"exposure {k}" for k in levels], rows if levels else []


def _protocol(options: ScoreOptions) -> str:
    frames = "every frame" if options.all_frames else (
        f"frames with a complete T={options.num_seq} window (first and last {options.num_seq // 2} excluded)")
    space = "Y channel (BT.601)" if options.y_channel else "RGB"
    crop = f", {options.border}-pixel border cropped" if options.border else ""
    return (f"{space} PSNR / MATLAB SSIM on 8-bit frames{crop}; tOF (Farneback, lower is better); {frames}. "
            f"Motion bins: mean Farneback flow norm between consecutive ground-truth frames; "
            f"cells are PSNR / tOF (frames).")


def markdown_tables(results: list[MethodResult], options: ScoreOptions) -> str:
    header, rows = _clip_rows(results)
    mh, mrows = _motion_rows(results)
    parts = [_md_table(SUMMARY_HEADER, _summary_rows(results)), _protocol(options),
             "Per clip:", _md_table(header, rows), "By motion magnitude:", _md_table(mh, mrows)]
    eh, erows = _exposure_rows(results)
    if erows:
        parts += ["By exposure level (duty cycle; PSNR / SSIM / tOF):", _md_table(eh, erows)]
    return "\n\n".join(parts)


# ---------------------------------------------------------------- the page

def _png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _jpeg(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _uri(data: bytes, kind: str) -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def _html_table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}
table{border-collapse:collapse;margin:12px 0}th,td{border:1px solid #bbb;padding:4px 10px;text-align:right}
th{background:#e8e8e8}td:first-child,th:first-child{text-align:left}
.slider{position:relative;display:inline-block;max-width:100%;line-height:0}
.slider img{max-width:100%;display:block}.slider .top{position:absolute;left:0;top:0;width:100%;height:100%;
object-fit:fill}
.pics{display:flex;flex-wrap:wrap;gap:10px}.pics figure{margin:0}.pics img{image-rendering:pixelated}
figcaption{font-size:13px;text-align:center;line-height:1.4}.sample{border-top:2px solid #ccc;margin-top:24px}
"""

_SCRIPT = """
document.querySelectorAll('.compare').forEach(function(c){
  var imgs=JSON.parse(c.dataset.images), l=c.querySelector('.left'), r=c.querySelector('.right'),
      top=c.querySelector('.top'), base=c.querySelector('.base'), s=c.querySelector('input[type=range]');
  Object.keys(imgs).forEach(function(k){l.add(new Option(k,k));r.add(new Option(k,k));});
  l.value=c.dataset.left; r.value=c.dataset.right;
  function upd(){top.src=imgs[l.value];base.src=imgs[r.value];
    top.style.clipPath='inset(0 '+(100-s.value)+'% 0 0)';}
  l.onchange=upd;r.onchange=upd;s.oninput=upd;upd();
});
"""


def write_report(results: list[MethodResult], folder: str | Path, options: ScoreOptions, *, title: str,
                 command: str = "", maps: dict[tuple[str, int], dict[str, np.ndarray]] | None = None,
                 crop: int = 96, max_samples: int = 6) -> Path:
    """Write ``report.md``, ``report.html`` (self-contained) and ``images/`` into ``folder``.

    ``results[0]`` is the method the pictures centre on; ``maps`` holds extra named pictures per
    sample (FMA-Net flows and kernels). Returns the HTML path. Files are written under a
    temporary name and moved into place.
    """
    folder = Path(folder)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    mark_output_folder(folder, "vsrdb evaluate --report")
    maps = maps or {}
    keys = list(results[0].samples)[:max_samples]
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if command:
        parts.append(f"<p><code>{html.escape(command)}</code></p>")
    parts.append(_html_table(SUMMARY_HEADER, _summary_rows(results), "summary"))
    parts.append(f"<p>{html.escape(_protocol(options))}</p>")
    header, rows = _clip_rows(results)
    parts += ["<h2>Per clip</h2>", _html_table(header, rows, "clips")]
    mh, mrows = _motion_rows(results)
    parts += ["<h2>By motion magnitude</h2>", _html_table(mh, mrows, "motion")]
    eh, erows = _exposure_rows(results)
    if erows:
        parts += ["<h2>By exposure level (duty cycle)</h2>", _html_table(eh, erows, "exposure")]
    md_pics = []
    for n, key in enumerate(keys):
        clip, index = key
        base = results[0].samples[key]
        target = base["target"]
        frames: dict[str, Tensor] = {}
        if base.get("input") is not None:
            lr = base["input"]
            frames["blurry input (bicubic x4)"] = imresize(lr, target.shape[-1] / lr.shape[-1]).clamp(0, 1)[
                :, :target.shape[1], :target.shape[2]]
        for r in results:
            if key in r.samples:
                frames[r.name] = r.samples[key]["output"]
        frames["ground truth"] = target
        arrays = {k: to_array(v) for k, v in frames.items()}
        uris = {k: _uri(_jpeg(a), "jpeg") for k, a in arrays.items()}
        left = next(iter(uris))
        right = results[0].name if results[0].name in uris else "ground truth"
        parts.append(f'<div class="sample"><h2>Clip {html.escape(clip)}, frame {index}</h2>')
        parts.append(f'<div class="compare" data-images="{html.escape(json.dumps(uris))}" '
                     f'data-left="{html.escape(left)}" data-right="{html.escape(right)}">'
                     f'<p>left <select class="left"></select> | right <select class="right"></select> '
                     f'<input type="range" min="0" max="100" value="50" style="width:300px"></p>'
                     f'<div class="slider"><img class="base" alt="right"><img class="top" alt="left"></div></div>')
        top, lft, size = detail_crop(target, crop)
        zoom = max(1, 288 // size)
        crops = {k: np.kron(a[top:top + size, lft:lft + size], np.ones((zoom, zoom, 1), np.uint8))
                 for k, a in arrays.items()}
        parts.append(f"<h3>Zoomed crop ({size}x{size} at x{lft}, y{top}, shown x{zoom})</h3><div class='pics'>")
        parts += [f'<figure><img src="{_uri(_png(c), "png")}" alt="{html.escape(k)}">'
                  f"<figcaption>{html.escape(k)}</figcaption></figure>" for k, c in crops.items()]
        parts.append("</div><h3>Error maps |output - ground truth| (black = 0, yellow >= "
                     f"{ERROR_RANGE:g})</h3><div class='pics'>")
        errs = {k: error_map(v, target) for k, v in frames.items() if k != "ground truth"}
        parts += [f'<figure><img src="{_uri(_jpeg(e), "jpeg")}" alt="error {html.escape(k)}" '
                  f'style="max-width:420px"><figcaption>{html.escape(k)}</figcaption></figure>' for k, e in errs.items()]
        parts.append("</div>")
        extra = maps.get(key, {})
        if extra:
            parts.append("<h3>The model's own maps (its family's <code>diagnostic_maps</code>)</h3><div class='pics'>")
            for k, m in extra.items():
                zoom_m = max(1, 256 // m.shape[0])
                big = np.kron(m, np.ones((zoom_m, zoom_m, 1), np.uint8))
                parts.append(f'<figure><img src="{_uri(_png(big), "png")}" alt="{html.escape(k)}">'
                             f"<figcaption>{html.escape(k)}</figcaption></figure>")
            parts.append("</div>")
        parts.append("</div>")
        # The same pictures as files, for the Markdown report.
        strip = np.concatenate([crops[k] for k in crops], axis=1)
        write_atomically(images / f"{n:02d}_{clip}_crops.png", _png(strip))
        md_pics.append(f"![{clip} frame {index}: {' | '.join(crops)}](images/{n:02d}_{clip}_crops.png)")
        for j, (k, m) in enumerate(extra.items()):
            write_atomically(images / f"{n:02d}_{clip}_map{j}.png", _png(m))
            md_pics.append(f"![{k}](images/{n:02d}_{clip}_map{j}.png)")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}<script>{_SCRIPT}</script></body></html>")
    md = f"# {title}\n\n" + (f"`{command}`\n\n" if command else "") + markdown_tables(results, options)
    if md_pics:
        md += "\n\nChosen frames (crops: " + ", ".join(frames) + "):\n\n" + "\n\n".join(md_pics)
    write_atomically(folder / "report.md", (md + "\n").encode())
    write_atomically(folder / "report.html", page.encode())
    return folder / "report.html"


