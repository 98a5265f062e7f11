"""What the site (scripts/site.py) says about each model: the pictures of real people with the
original's and each artifact's keypoints (PNG), size against error for the whole manifest (PNG),
the rows of parity and accuracy per artifact, and the Markdown model card. Accuracy comes from the
reports `posezoo eval` wrote to DIR/eval/.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}
PICTURE_PEOPLE = 3


def read_evals(directory: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((directory / "eval").glob("*.json"))]


def _label(row: dict) -> str:
    if row["format"] == "original":
        return "original"
    return f"{row['format']} {row['precision']}" + (" (vendor)" if row["origin"] == "vendor" else "")


# --- figures -------------------------------------------------------------------------------------

def pictures_png(model: dict, evaluation: dict, annotations: str, path: Path) -> Path | None:
    """Rows: the first annotated people; columns: the original, then every artifact."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from posezoo.decoders import found

    people = evaluation["people"][:PICTURE_PEOPLE]
    runs = evaluation["examples"]
    if not people or not runs:
        return None
    names = evaluation["names"]
    model_names = model["keypoints"]["names"]
    edges = [(names.index(model_names[a]), names.index(model_names[b])) for a, b in model["keypoints"].get("skeleton", [])
             if model_names[a] in names and model_names[b] in names]
    rows = {r["path"]: r for r in evaluation["rows"]}
    fig, axes = plt.subplots(len(people), len(runs), figsize=(2.2 * len(runs), 2.6 * len(people)), squeeze=False)
    for i, person in enumerate(people):
        image = np.asarray(Image.open(person["image"]).convert("RGB"))
        x, y, w, h = person["box"]
        side = 1.2 * max(w, h)
        cx, cy = x + w / 2, y + h / 2
        truth = np.asarray(person["truth"])
        for j, run in enumerate(runs):
            ax = axes[i][j]
            ax.imshow(image)
            ax.set_xlim(cx - side / 2, cx + side / 2)
            ax.set_ylim(cy + side / 2, cy - side / 2)
            ax.axis("off")
            seen = truth[truth[:, 2] > 0]
            ax.plot(seen[:, 0] - 0.5, seen[:, 1] - 0.5, "x", color="0.85", ms=4, mew=1)
            kp = run["keypoints"].get(str(person["key"]))
            if kp is not None:
                kp = np.asarray(kp)
                shown = found(kp[:, 2], model["decoder"])  # keypoints the decoder does not find are not drawn
                for a, b in edges:
                    if shown[a] and shown[b]:
                        ax.plot(kp[[a, b], 0] - 0.5, kp[[a, b], 1] - 0.5, "-", color="#00c8ff", lw=1.2)
                ax.scatter(kp[shown, 0] - 0.5, kp[shown, 1] - 0.5, c=kp[shown, 2], cmap="autumn", vmin=0, vmax=1,
                           s=9, zorder=3)
            if i == 0:
                ax.set_title(_label(rows[run["artifact"]]), fontsize=8)
    fig.suptitle(f"{model['id']} on {annotations} (grey x: annotation)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def size_error_png(manifest: dict, evals: list[dict], path: Path) -> Path | None:
    """Left: parity's worst keypoint error; right: mean deviation from the original on the eval set.
    None for a manifest without artifacts."""
    if not any(model["artifacts"] for model in manifest["models"]):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    deviation = {}
    for e in evals:
        for m in e["models"]:
            for r in m["rows"]:
                if r["format"] != "original" and r.get("deviation") is not None:
                    deviation[(m["id"], r["path"])] = r["deviation"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.get_cmap("tab10")
    for k, model in enumerate(manifest["models"]):
        for art in model["artifacts"]:
            mb = art["bytes"] / 1e6
            marker = PRECISION_MARKERS[art["precision"]]
            face = colors(k % 10) if art["format"] == "tflite" else "none"
            style = dict(marker=marker, s=40, edgecolors=colors(k % 10), facecolors=face)
            axes[0].scatter(mb, max(art["parity"].get("worst_keypoint_err", 0.0), 1e-7), **style)
            if (model["id"], art["path"]) in deviation:
                axes[1].scatter(mb, max(deviation[(model["id"], art["path"])], 1e-7), **style)
        axes[0].scatter([], [], marker="o", color=colors(k % 10), label=model["id"])
    for p, marker in PRECISION_MARKERS.items():
        axes[0].scatter([], [], marker=marker, facecolors="none", edgecolors="k", label=p)
    axes[0].set(xscale="log", yscale="log", xlabel="file size (MB)",
                ylabel="worst keypoint error vs original\n(fraction of input size, parity set)")
    axes[1].set(xscale="log", yscale="log", xlabel="file size (MB)",
                ylabel="mean keypoint deviation from original\n(fraction of person size, eval set)")
    if not deviation:
        axes[1].text(0.5, 0.5, "no eval yet: run posezoo eval", transform=axes[1].transAxes, ha="center")
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("size vs error per artifact (filled: TFLite, hollow: ONNX)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- tables --------------------------------------------------------------------------------------

def artifact_rows(model: dict, evals: list[dict]) -> list[dict]:
    """Every artifact (and every rejected one) with its parity and each eval's accuracy."""
    accuracy: dict[str, dict] = {}
    for e in evals:
        for m in e["models"]:
            if m["id"] == model["id"]:
                for r in m["rows"]:
                    accuracy.setdefault(r["path"], {})[Path(e["annotations"]).name] = (e["metric"], r)
    rows = [{"artifact": a["path"], "format": a["format"], "precision": a["precision"], "origin": a["origin"],
             "bytes": a["bytes"], "sha256": a["sha256"], "parity": a["parity"], "published": True,
             "accuracy": accuracy.get(a["path"], {})} for a in model["artifacts"]]
    rows += [{"artifact": "(not published)", "format": r["format"], "precision": r["precision"],
              "origin": "converted", "bytes": None, "sha256": None, "parity": r.get("parity", {}), "published": False,
              "reason": r["reason"], "accuracy": {}} for r in model.get("rejected", [])]
    original = {name: (metric, r) for path, runs in accuracy.items() for name, (metric, r) in runs.items()
                if r["format"] == "original"}
    return ([{"artifact": model["source"]["file"], "format": "original", "precision": "", "origin": "original",
              "bytes": model["source"]["bytes"], "sha256": model["source"]["sha256"], "parity": {},
              "published": None, "accuracy": original}] if original else []) + rows


def accuracy_text(acc: dict) -> str:
    parts = []
    for name, (metric, r) in acc.items():
        value = f"{r[metric]:.3f}" if metric in r else "n/a"
        drop = f" ({-r['drop']:+.3f})" if r.get("drop") else ""
        parts.append(f"{metric} {value}{drop} on {name}")
    return "; ".join(parts)


def parity_text(p: dict) -> str:
    if not p:
        return ""
    verdict = "PASS" if p.get("passed") else "FAIL"
    people = " gate people (not calibrated on)" if p.get("people") == "gate" else ""
    text = (f"{verdict}: rel err {p.get('rel_err', float('nan')):.2g}, cos {p.get('cos', float('nan')):.6f}, "
            f"PCK@0.05 {p.get('pck@0.05', float('nan')):.3f}, n={p.get('samples', '?')}{people}")
    if p.get("by_source"):
        text += " (" + ", ".join(f"{source} {pck:.3f}" for source, pck in p["by_source"].items()) + ")"
    robust = p.get("robustness")
    if robust:
        worst = min(robust["by_transform"].items(), key=lambda kv: kv[1])
        text += (f"; robustness set PCK@0.05 {robust['pck@0.05']:.3f} (n={robust['samples']}, worst {worst[0]} "
                 f"{worst[1]:.3f})")
    return text


# --- model cards ---------------------------------------------------------------------------------

def model_card(model: dict, evals: list[dict]) -> str:
    spec, src = model["input"], model["source"]
    norm = spec.get("normalization")
    lines = [f"# {model['id']}", "", f"{model['title']}.", "",
             f"- Task: {model['task']}; family {model['family']}, variant {model['variant']}",
             f"- License: {model['license']}",
             f"- Paper: [{model['paper']['title']}]({model['paper']['url']})" if model.get("paper") else "- Paper: -",
             f"- Original: `{src['file']}` ({src['bytes']} bytes), sha256 `{src['sha256']}`",
             *[f"  - read with `{c['file']}` ({c['bytes']} bytes), sha256 `{c['sha256']}`"
               for c in src.get("companions", [])],
             *[f"  - source: {u}" for u in src.get("urls", [])],
             *([f"  - not the publisher's file: {src['derived']['summary']}"] if "derived" in src else []),
             "", "## Input", "",
             f"- Tensor `{spec['name']}`: {spec['shape']} {spec.get('layout', 'NHWC')} {spec['dtype']}, "
             f"{spec.get('color', 'RGB')}" + (f", (x - {norm['mean']}) / {norm['std']}" if norm else ""),
             f"- Crop: `{json.dumps(spec['crop'])}`",
             "", "## Outputs", ""]
    lines += [f"- `{o['name']}` {o['shape']}: {o.get('meaning', '')}" for o in model["outputs"]]
    lines += ["", f"Decoder: `{json.dumps(model['decoder'])}`", "",
              f"Keypoints ({len(model['keypoints']['names'])}): {', '.join(model['keypoints']['names'])}", ""]
    if model.get("complexity"):
        c = model["complexity"]
        lines += [f"Complexity: {c['params'] / 1e6:.2f} M parameters, {c['flops'] / 1e6:.1f} M MACs "
                  f"({c.get('flops_convention', '')})", ""]
    lines += ["## Artifacts", "", "| file | format | precision | origin | bytes | sha256 | parity | accuracy |",
              "|---|---|---|---|---|---|---|---|"]
    for r in artifact_rows(model, evals):
        lines.append(f"| {r['artifact']} | {r['format']} | {r['precision']} | {r['origin']} | {r['bytes'] or ''} | "
                     f"{(r['sha256'] or '')[:16]} | "
                     f"{'reference' if r['published'] is None else ('' if r['published'] else 'NOT PUBLISHED: ') + parity_text(r['parity'])} | "
                     f"{accuracy_text(r['accuracy'])} |")
    lines += ["", "## Intended use and limits", ""] + limits(model, evals)
    return "\n".join(lines) + "\n"


def limits(model: dict, evals: list[dict]) -> list[str]:
    crop = model["input"]["crop"]
    out = []
    if crop["kind"] == "box":
        out.append("- Top-down: one person per run. Feed a person box (from a detector); the crop keeps the "
                   f"aspect ratio and pads by {crop.get('padding', 1.25)}.")
    elif crop["kind"] == "rotated_roi":
        out.append("- One person per run, in MediaPipe's rotated ROI: it needs the hips and shoulders from a "
                   "detector or from the previous frame; axis-aligned crops lose accuracy, most of all in INT8.")
    else:
        out.append("- Single person, whole frame: with several people in view it picks one; crop first.")
    verified = model["source"].get("verified_as")
    if verified:
        out.append(f"- Converted from a user-supplied file verified, by its hash, as the published {verified['name']} "
                   f"({', '.join(verified['published_at'])}).")
    elif model["source"].get("user_supplied"):
        out.append("- Converted from a user-supplied checkpoint; parity shows the conversion is faithful to "
                   "that file, not that the file is the published model.")
    if "derived" in model["source"]:
        out.append(f"- Built from a conversion of the publisher's model, not from the publisher's own file. "
                   f"{model['source']['derived']['summary']} Parity is measured against that conversion.")
    people = [e["people"] for e in evals if any(m["id"] == model["id"] for m in e["models"])]
    if people:
        out.append(f"- Accuracy was measured on {sum(people)} annotated people: enough to compare "
                   "artifacts with the original, not a benchmark score; run `posezoo eval` on COCO val2017 or "
                   "MPII val for that.")
    if any(a["precision"] == "int8" for a in model["artifacts"]):
        out.append("- INT8 artifacts were calibrated on real person crops; their parity numbers are on the same "
                   "kind of crops. Check the INT8 numbers above before choosing it over FP16.")
    return out
