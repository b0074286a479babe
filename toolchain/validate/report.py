"""validate's outputs: report.json, report.html (side-by-side overlays, worst frames first, plots)."""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from ..fsutil import write_json, write_text

REF_COLOR = (0, 200, 0)  # BGR green: the PyTorch reference
CAND_COLOR = (0, 0, 255)  # BGR red: the candidate


THUMB_WIDTH = 800  # overlays are shown at this width; a click swaps in the full-size frame


def _jpeg_b64(img_bgr: np.ndarray, quality: int = 85) -> str:
    """JPEG, not PNG: the overlays are photographs, and PNG made the page 8 MB."""
    import cv2

    ok, buf = cv2.imencode(".jpg", img_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return base64.b64encode(buf.tobytes()).decode() if ok else ""


def _thumb(img_bgr: np.ndarray) -> np.ndarray:
    import cv2

    h, w = img_bgr.shape[:2]
    if w <= THUMB_WIDTH:
        return img_bgr
    return cv2.resize(img_bgr, (THUMB_WIDTH, round(h * THUMB_WIDTH / w)), interpolation=cv2.INTER_AREA)


def _caption(img: np.ndarray, text: str) -> None:
    """White text on a dark label box: readable over bright frames too."""
    import cv2

    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    (tw, th), base = cv2.getTextSize(text, font, scale, 1)
    cv2.rectangle(img, (2, 2), (2 + tw + 8, 2 + th + base + 6), (32, 32, 32), -1)
    cv2.putText(img, text, (6, 4 + th), font, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _side_by_side(frame, ref, cand, recipe) -> np.ndarray:

    from ..draw import draw_detections

    left = draw_detections(frame, ref, recipe, REF_COLOR)
    right = draw_detections(frame, cand, recipe, CAND_COLOR)
    for img, text in ((left, "reference (PyTorch fp32)"), (right, "candidate")):
        _caption(img, text)
    return np.concatenate([left, np.full((frame.shape[0], 4, 3), 255, np.uint8), right], axis=1)


def _plot(report: dict) -> str:
    """Error distributions per candidate (matched IoU, per-frame landmark error), as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [c for c in report["candidates"] if c["per_frame"]]
    if not ran:
        return ""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for c in ran:
        axes[0].hist([f["min_iou"] for f in c["per_frame"]], bins=20, range=(0.5, 1.0), histtype="step",
                     label=c["name"])
        axes[1].hist([f["max_landmark_px"] for f in c["per_frame"]], bins=20, histtype="step", label=c["name"])
    axes[0].set_title("worst matched IoU per frame")
    axes[1].set_title("worst landmark error per frame (px)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def render_html(report: dict, frames, refs, ref_dets, outputs, recipe) -> str:
    e = html.escape
    status_color = {"pass": "#1a7f37", "fail": "#cf222e", "skipped": "#6e7781"}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>fbtool validate</title><style>",
        "body{font-family:sans-serif;margin:20px;color:#222}table{border-collapse:collapse;margin:8px 0}",
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}th{background:#f3f3f3}",
        "td.l{text-align:left}img{max-width:100%;border:1px solid #ddd}.fig{margin:6px 0 18px}",
        "</style></head><body>",
        f"<h1>fbtool validate: {e(report['recipe']['name'])}</h1>",
        f"<p>{len(frames)} real frames; reference: {e(report['reference']['runner'])}, "
        f"{report['reference']['faces']} faces. Overall: <b style='color:"
        f"{status_color['pass' if report['passed'] else 'fail']}'>{'PASS' if report['passed'] else 'FAIL'}</b>."
        " Green: reference, red: candidate (boxes, landmarks, contour masks).</p>",
        "<table><tr><th>candidate</th><th>precision</th><th>status</th><th>F1</th><th>mean IoU</th>"
        "<th>max landmark px</th><th>mean mask IoU</th><th>max score delta</th><th class='l'>note</th></tr>",
    ]
    for c in report["candidates"]:
        s = c["summary"]
        cells = ["", "", "", "", ""] if not s else [f"{s['f1']:.4f}", f"{s['mean_iou']:.4f}",
                                                    f"{s['max_landmark_px']:.2f}", f"{s['mean_mask_iou']:.4f}",
                                                    f"{s['max_score_delta']:.4f}"]
        note = c["reason"] or "; ".join(c["breaches"]) or f"{c['seconds']} s"
        if c.get("pixels"):  # the nvinfer candidate: what the DeepStream blur app would write
            note += f" | {c['pixels']['summary']}"
        parts.append(f"<tr><td class='l'>{e(c['name'])}</td><td>{c['precision']}</td>"
                     f"<td style='color:{status_color[c['status']]}'><b>{c['status']}</b></td>"
                     + "".join(f"<td>{v}</td>" for v in cells) + f"<td class='l'>{e(note)}</td></tr>")
    parts.append("</table>")
    plot = _plot(report)
    if plot:
        parts.append(f"<h2>Error distributions</h2><img alt='error distributions' src='data:image/png;base64,{plot}'>")
    for c in report["candidates"]:
        if c["name"] not in outputs:
            continue
        parts.append(f"<h2>{e(c['name'])}: {e(c['description'])}</h2>")
        if c["tensors"]:
            parts.append("<table><tr><th>output</th><th>max abs error</th><th>reference range</th>"
                         "<th>error / range</th><th>cosine</th></tr>")
            for name, st in c["tensors"].items():
                rng = f"{st['range']:.4g}" if "range" in st else ""
                frac = f"{st['of_range']:.1e}" if "of_range" in st else ""
                parts.append(f"<tr><td class='l'>{e(name)}</td><td>{st['max_abs']:.3e}</td>"
                             f"<td>{rng}</td><td>{frac}</td><td>{st['cosine']:.6f}</td></tr>")
            parts.append("</table>")
        parts.append("<p>Worst frames first:</p>")
        for i in c["worst_frames"]:
            pf = c["per_frame"][i]
            img = _side_by_side(frames[i], ref_dets[i], outputs[c["name"]][i], recipe)
            thumb, full = _jpeg_b64(_thumb(img)), _jpeg_b64(img, 92)
            parts.append(f"<div class='fig'><div>{e(refs[i].label)}: {pf['tp']} matched, {pf['fn']} missed, "
                         f"{pf['fp']} extra, worst IoU {pf['min_iou']:.3f}</div>"
                         f"<img class='zoom' title='click for full size' alt='{e(refs[i].label)}' "
                         f"src='data:image/jpeg;base64,{thumb}' data-full='data:image/jpeg;base64,{full}'></div>")
    parts.append("<p style='color:#666;font-size:12px'>Frames: Intel IoT Devkit sample videos, CC BY 4.0.</p>")
    # A click swaps a thumbnail for its full-size frame (and back): no second file to keep beside the page.
    parts.append("<script>document.querySelectorAll('img.zoom').forEach(function(i){i.style.cursor='zoom-in';"
                 "i.onclick=function(){var f=i.dataset.full;i.dataset.full=i.src;i.src=f;};});</script>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(run, report, frames, refs, ref_dets, outputs, recipe) -> dict:
    json_path = run.file("report.json")
    html_path = run.file("report.html")
    write_json(json_path, report)
    write_text(html_path, render_html(report, frames, refs, ref_dets, outputs, recipe))
    return {"report_json": json_path, "report_html": html_path}
