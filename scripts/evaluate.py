"""`posezoo eval`: accuracy of every artifact of a manifest on annotated people, beside the original.

Every artifact runs through `posezoo.loader` (the manifest alone); the original runs in its own
framework (the recipe's code, as in the build's parity), fed the same crops by the same loader
path. Metrics:
- COCO-format annotations (17 keypoints): OKS-based AP by pycocotools' COCOeval, on the
  annotation boxes (one prediction per annotated person, score = mean of its keypoint scores
  above 0.2, as mmpose rescores top-down results). A model is evaluated where it predicts every
  annotated keypoint name (BlazePose's 33 include COCO's 17).
- mmpose's MPII JSON (16 joints): PCKh@0.5 (and @0.1) over visible joints; the head size is
  0.6 x the head box diagonal where the file has `headbox`, else the head_top-upper_neck distance.

Single-person models with a `calibration_crop` are fed one crop per annotated person, as the build's
parity does; multi-person models see each photo once and each annotated person is matched to the
nearest detected pose. Coordinates: the loader's are continuous (pixel centres at +0.5); COCO annotations
are pixel indices (centre at 0), mmpose's MPII file is 1-based (MATLAB); predictions are shifted
into the annotation's convention before scoring.

Writes DIR/eval/<annotations>.json (metrics, and the keypoints of the first people, predicted
and annotated, in the loader's coordinates, for the report's pictures) and prints a table.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from posezoo.converters import annotations, cluster, quiet
from posezoo.converters.annotations import Person
from posezoo.errors import PosezooError

EXAMPLES = 8  # people whose keypoints eval.json keeps for the report's pictures


class EvalError(PosezooError):
    pass


@dataclass
class Annotations:
    kind: str  # "coco" or "mpii"
    path: Path
    names: list[str]
    people: list[Person]  # the people the metric scores (posezoo.converters.annotations: coordinates as in the file)
    to_annotation: float  # add to a loader coordinate to get the file's own convention
    coco: object = None  # pycocotools COCO (kind "coco")
    notes: list[str] = field(default_factory=list)

    def truth(self, person: Person) -> np.ndarray:
        """The person's annotated keypoints, K x 3: x, y in the loader's coordinates, visible (0/1)."""
        return np.c_[person.points[:, :2] - self.to_annotation, person.points[:, 2]]


def read_annotations(path: Path, images: Path) -> Annotations:
    """COCO-format keypoint JSON or mmpose's MPII JSON list (posezoo.converters.annotations reads them);
    images are looked up in `images`."""
    path, images = Path(path), Path(images)
    try:
        found = annotations.read(path, images)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EvalError(f"cannot read annotations {path}: {e}") from e
    if found is None:
        raise EvalError(f"{path} is neither COCO-format keypoint annotations (images, annotations, categories with "
                        "keypoints) nor mmpose's MPII list (image, center, scale, joints, joints_vis per person)")
    people = [p for p in found.people if p.scored]
    for person in people:
        if not person.image.is_file():
            raise EvalError(f"image {person.image.name!r} of the annotations is not in {images}")
    return Annotations(found.kind, path, found.names, people, -found.to_loader,
                       _coco_index(found.data) if found.kind == "coco" else None, found.notes)


def _coco_index(data: dict):
    """pycocotools' COCO over the dataset `data`, quietly."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress lines
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    return coco


# --- metrics -------------------------------------------------------------------------------------

def coco_ap(ann: Annotations, predictions: dict[int, tuple]) -> dict[str, float]:
    """OKS AP of {annotation id: (K x 2 keypoints in the annotation's convention, K scores, _)},
    over the annotated people that have a prediction."""
    from pycocotools.cocoeval import COCOeval

    if not predictions:
        return {}
    image_of = {a["id"]: a["image_id"] for a in ann.coco.dataset["annotations"]}
    results = []
    for key, (xy, scores, _) in predictions.items():
        confident = scores[scores > 0.2]
        results.append({"image_id": image_of[key], "category_id": ann.coco.dataset["annotations"][0]["category_id"],
                        "keypoints": np.c_[xy, scores].reshape(-1).tolist(),
                        "score": float(confident.mean()) if confident.size else 0.0})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = _subset(ann.coco, set(predictions))
        dt = gt.loadRes(results)
        e = COCOeval(gt, dt, "keypoints")
        e.params.imgIds = sorted({r["image_id"] for r in results})
        e.evaluate()
        e.accumulate()
        e.summarize()
    return {"AP": float(e.stats[0]), "AP50": float(e.stats[1]), "AP75": float(e.stats[2]), "AR": float(e.stats[5])}


def _subset(coco, keys: set[int]):
    """The same dataset with only the annotated people in `keys` (the ones a model could be fed)."""
    return _coco_index({**coco.dataset, "annotations": [a for a in coco.dataset["annotations"] if a["id"] in keys]})


def pckh(ann: Annotations, predictions: dict[int, tuple]) -> dict[str, float]:
    """Share of visible joints within 0.5 (0.1) head sizes of the annotation, people with a head size."""
    errors = []
    for person in ann.people:
        if person.key not in predictions or not person.head_size:
            continue
        xy = predictions[person.key][0]
        truth = person.points[:, :2]  # the file's own coordinates
        visible = person.points[:, 2] > 0
        errors.extend(np.linalg.norm(xy[visible] - truth[visible], axis=1) / person.head_size)
    if not errors:
        return {}
    errors = np.asarray(errors)
    return {"PCKh@0.5": float(np.mean(errors <= 0.5)), "PCKh@0.1": float(np.mean(errors <= 0.1))}


METRICS = {"coco": (coco_ap, "AP"), "mpii": (pckh, "PCKh@0.5")}


# --- running -------------------------------------------------------------------------------------

def original_artifact(model: dict) -> dict:
    """What the loader needs to know to feed the original like an artifact: the model's own I/O."""
    spec = model["input"]
    return {"format": "original", "precision": "original", "origin": "original", "path": model["source"]["file"],
            "input_layout": spec.get("layout", "NHWC"),
            "io": {"inputs": [{"name": spec["name"], "dtype": spec["dtype"], "quantization": None}],
                   "outputs": [{"name": o["name"], "dtype": "float32", "quantization": None} for o in model["outputs"]]}}


def _match_people(predictor, ann: Annotations, index: list[int], progress) -> dict[int, tuple]:
    """A multi-person model sees each whole photo once; each annotated person gets the detected
    pose nearest to its visible keypoints (mean distance over the box diagonal), greedily, each
    pose at most once. Detections matching nobody are not scored (no false positives count)."""
    from PIL import Image

    from posezoo.loader import crop_side

    by_image: dict[Path, list] = {}
    for person in ann.people:
        by_image.setdefault(person.image, []).append(person)
    out = {}
    for image, people in by_image.items():
        rgb = np.asarray(Image.open(image).convert("RGB"))
        poses = predictor.poses(rgb)
        costs = []
        for i, person in enumerate(people):
            visible = person.points[:, 2] > 0
            if not visible.any():
                continue
            truth, diagonal = ann.truth(person)[visible, :2], float(np.hypot(person.box[2], person.box[3])) or 1.0
            for j, pose in enumerate(poses):
                xy = pose.keypoints[index][visible]
                costs.append((float(np.linalg.norm(xy - truth, axis=1).mean()) / diagonal, i, j))
        taken_people, taken_poses = set(), set()
        for _, i, j in sorted(costs):
            if i in taken_people or j in taken_poses:
                continue
            taken_people.add(i)
            taken_poses.add(j)
            pose = poses[j]
            size = crop_side(pose.matrix, predictor.width, predictor.height)
            out[people[i].key] = (pose.keypoints[index] + ann.to_annotation, pose.scores[index], size)
        progress.update(len(people))
    return out


def predict_all(predictor, ann: Annotations, names: list[str], progress) -> dict[int, tuple]:
    """{person key: (keypoints in the annotation's order and convention, scores, crop size)} for
    every person the model's crop rule can be cut for; the crop size (the model input's longer
    side in photo pixels) is parity's unit of keypoint error."""
    from PIL import Image

    from posezoo.loader import LoaderError, crop_side

    index = [names.index(n) for n in ann.names]
    if predictor.model["task"] == "keypoints-multi-person":
        return _match_people(predictor, ann, index, progress)
    out, image_path, rgb = {}, None, None
    for person in ann.people:
        if person.image != image_path:
            image_path, rgb = person.image, np.asarray(Image.open(person.image).convert("RGB"))
        visible = {ann.names[k]: tuple(p[:2]) for k, p in enumerate(ann.truth(person)) if p[2] > 0}
        try:
            pose = predictor(rgb, box=person.box, keypoints=visible)
        except LoaderError:
            continue  # e.g. a rotated ROI without visible hips and shoulders
        finally:
            progress.update(1)
        size = crop_side(pose.matrix, predictor.width, predictor.height)
        out[person.key] = (pose.keypoints[index] + ann.to_annotation, pose.scores[index], size)
    return out


def evaluate(manifest_path: Path, ann: Annotations, resolver=None, ids=None, with_original: bool = True,
             threads: int = 1, log=print, progress: bool = True, ray=None, ray_cpus: float = 1.0) -> dict:
    """`ray`: a connected Ray module (posezoo.converters.cluster.connected) to shard the people over."""
    from tqdm import tqdm

    from posezoo.converters.calibration import parity_crop
    from posezoo.manifest import read_manifest

    manifest = read_manifest(manifest_path)
    metric, headline = METRICS[ann.kind]
    models = [m for m in manifest["models"] if not ids or m["id"] in ids]
    if ids and len(models) != len(set(ids)):
        raise EvalError(f"not in {manifest_path}: {sorted(set(ids) - {m['id'] for m in models})}")
    report = {"annotations": str(ann.path), "metric": headline, "kind": ann.kind, "notes": ann.notes,
              "people": len(ann.people), "models": []}
    for model in models:
        missing = [n for n in ann.names if n not in model["keypoints"]["names"]]
        if missing:
            log(f"{model['id']}: skipped, it does not predict {missing[:4]}{'...' if len(missing) > 4 else ''} "
                f"of {ann.path.name}")
            continue
        crop = parity_crop(model)
        arts = model["artifacts"]
        if with_original and not any(a["origin"] == "vendor" for a in arts):
            arts = [original_artifact(model), *arts]
        if ray is None:
            runs = []
            for art in arts:
                predictor = _predictor(manifest_path, model, art, resolver, threads, crop)
                with tqdm(total=len(ann.people), desc=_label(model, art), disable=not progress, file=sys.stderr,
                          leave=False) as bar:
                    runs.append(predict_all(predictor, ann, model["keypoints"]["names"], bar))
        else:
            runs = _predict_on_ray(ray, ray_cpus, manifest_path, model, arts, ann, resolver, threads, crop, progress)
        entry = {"id": model["id"], "crop": crop, "rows": [], "examples": []}
        reference_xy = None
        for art, predictions in zip(arts, runs):
            row = {"format": art["format"], "precision": art["precision"], "origin": art["origin"],
                   "path": art["path"], "people": len(predictions), **metric(ann, predictions)}
            if reference_xy is None:
                reference_xy = predictions
            row.update(agreement(predictions, reference_xy, model["decoder"]))
            gates = {k[:-4]: v for k, v in art.get("parity", {}).get("thresholds", {}).items()
                     if k.startswith("pck@") and k.endswith("_min")}
            if gates:  # the artifact's own task-level parity gate, on these people
                row["agrees"] = all(row["agreement"][k] >= v for k, v in gates.items())
            entry["rows"].append(row)
            entry["examples"].append({"artifact": art["path"], "keypoints": {
                str(p.key): np.c_[predictions[p.key][0] - ann.to_annotation, predictions[p.key][1]].round(2).tolist()
                for p in ann.people[:EXAMPLES] if p.key in predictions}})
        base = entry["rows"][0].get(headline)
        for row in entry["rows"]:
            if base is not None and headline in row:
                row["drop"] = round(base - row[headline], 6)
        entry["reference"] = entry["rows"][0]["format"]
        entry["people"] = [{"key": p.key, "image": str(p.image), "box": list(p.box),
                            "truth": ann.truth(p).round(2).tolist()} for p in ann.people[:EXAMPLES]]
        entry["names"] = ann.names
        report["models"].append(entry)
    return report


def _label(model: dict, art: dict) -> str:
    return f"{model['id']} {art['format']} {art['precision']}" + (" (vendor)" if art["origin"] == "vendor" else "")


def _predictor(manifest_path: Path, model: dict, art: dict, resolver, threads: int, crop: dict):
    """The loader's Predictor of one artifact, or of the original in its own framework."""
    from posezoo.loader import Predictor, load

    if art["origin"] == "original":
        from posezoo.scripts.verify import open_reference

        reference, _ = open_reference(model, resolver)
        return Predictor(model, art, reference.run, crop)
    return load(manifest_path, model["id"], art["format"], art["precision"], art["origin"], threads=threads,
                crop=crop)


# --- on Ray: the people sharded by photo, each task loading each artifact once ------------------------

def _predict_on_ray(ray, cpus: float, manifest_path: Path, model: dict, arts: list[dict], ann: Annotations,
                    resolver, threads: int, crop: dict, progress: bool) -> list[dict]:
    """predict_all of every run in `arts`, on Ray: the photos split into one shard per task slot of the
    cluster, merged back into the people's order (so the metrics are those of a local run)."""
    from tqdm import tqdm

    from posezoo.scripts.verify import original_spec

    root = Path(manifest_path).parent
    files = ray.put((Path(manifest_path).read_bytes(), {a["path"]: (root / a["path"]).read_bytes()
                                                        for a in arts if a["origin"] != "original"}))
    original = None
    if arts[0]["origin"] == "original":
        src = model["source"]
        original = cluster.Shipped.of(resolver.resolve(original_spec(model),
                                                       f"{model['id']} (original {src['file']})"))
    slots = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
    task = ray.remote(num_cpus=cpus, max_retries=cluster.RETRIES, retry_exceptions=False)(_predict_shard)
    pending = [task.remote(cluster.toolchain(), quiet.verbose(), model, arts, files, original, shard, photos,
                           threads, crop)
               for shard, photos in _shards(ann, slots)]
    merged: list[dict] = [{} for _ in arts]
    with tqdm(total=len(pending), desc=f"{model['id']} on Ray ({len(pending)} shards)", disable=not progress,
              file=sys.stderr, leave=False) as bar:
        while pending:
            (done,), pending = ray.wait(pending, num_returns=1)
            for run, part in zip(merged, cluster.result_of(ray, done)):
                run.update(part)
            bar.update(1)
    return [{p.key: run[p.key] for p in ann.people if p.key in run} for run in merged]


def _shards(ann: Annotations, count: int) -> list[tuple[Annotations, dict[str, bytes]]]:
    """`ann` cut into up to `count` parts of about equal people, never splitting a photo (a multi-person
    model sees each photo once), each with its photos' bytes by file name."""
    from dataclasses import replace

    by_image: dict[Path, list[Person]] = {}
    for person in ann.people:
        by_image.setdefault(person.image, []).append(person)
    parts: list[list[Person]] = [[] for _ in range(min(count, len(by_image)))]
    for people in sorted(by_image.values(), key=len, reverse=True):  # largest photos first, onto the lightest part
        min(parts, key=len).extend(people)
    return [(replace(ann, people=part, coco=None),
             {str(image): image.read_bytes() for image in dict.fromkeys(p.image for p in part)}) for part in parts]


def _predict_shard(driver: dict, verbose: bool, model: dict, arts: list[dict], files, original, ann: Annotations,
                   photos: dict[str, bytes], threads: int, crop: dict) -> list[dict]:
    """On a Ray worker: the manifest's files and the shard's photos written to a private folder, each
    run's predictions on the shard's people."""
    import tempfile
    from dataclasses import replace

    from tqdm import tqdm

    from posezoo.converters.sources import Resolver

    quiet.configure(verbose)
    cluster.check_toolchain(driver)
    manifest_bytes, artifacts = files
    with tempfile.TemporaryDirectory(prefix=f"posezoo-eval-{model['id']}-") as tmp:
        tmp = Path(tmp)
        (tmp / "manifest.json").write_bytes(manifest_bytes)
        cluster.unpack_folder(artifacts, tmp)
        landed = {name: f"photos/{k}{Path(name).suffix}" for k, name in enumerate(photos)}  # photo names may clash
        cluster.unpack_folder({landed[name]: data for name, data in photos.items()}, tmp)
        ann = replace(ann, people=[replace(p, image=tmp / landed[str(p.image)]) for p in ann.people])
        resolver = None
        if original is not None:
            mirror = tmp / "original"
            mirror.mkdir()
            original.land(mirror)
            resolver = Resolver(cache_dir=tmp / "cache", mirror_dir=mirror, offline=True)
        runs = []
        for art in arts:
            predictor = _predictor(tmp / "manifest.json", model, art, resolver, threads, crop)
            runs.append(predict_all(predictor, ann, model["keypoints"]["names"], tqdm(disable=True)))
        return runs


def agreement(predictions: dict, reference: dict, decoder: dict) -> dict:
    """How far each run moved the keypoints from the reference's (the original's, else the first
    run's), as parity measures it: in units of the crop's longer side; keypoints the `decoder`
    finds in neither run count as agreeing (posezoo.decoders.keypoint_errors). Mean `deviation`, and
    PCK at the radii of parity's gates."""
    from posezoo.decoders import keypoint_errors

    errors = []
    for key, (xy, scores, size) in predictions.items():
        if key not in reference:
            continue
        ref_xy, ref_scores, _ = reference[key]
        errors.extend(keypoint_errors(xy, scores, ref_xy, ref_scores, decoder, size))
    if not errors:
        return {"deviation": None, "agreement": {}}
    errors = np.asarray(errors)
    return {"deviation": round(float(errors.mean()), 6),
            "agreement": {f"pck@{a}": round(float(np.mean(errors <= a)), 4) for a in (0.01, 0.02, 0.05)}}


def print_table(report: dict) -> None:
    metric = report["metric"]
    print(f"{Path(report['annotations']).name}: {metric}, {report['people']} annotated people"
          + "".join(f"; {n}" for n in report["notes"]))
    print(f"{'model':30s} {'artifact':20s} {'people':>6s} {metric:>9s} {'drop':>7s} {'deviation':>9s} "
          f"{'agree@.02':>9s} {'agree@.05':>9s} gate")
    for m in report["models"]:
        for r in m["rows"]:
            name = f"{r['format']} {r['precision']}" + (" vendor" if r["origin"] == "vendor" else "")
            value = f"{r[metric]:.3f}" if metric in r else "n/a"
            drop = f"{r['drop']:+.3f}" if "drop" in r else ""
            dev = f"{r['deviation']:.2%}" if r["deviation"] is not None else ""
            a02, a05 = (f"{r['agreement'][k]:.3f}" if k in r["agreement"] else "" for k in ("pck@0.02", "pck@0.05"))
            gate = "" if "agrees" not in r else ("pass" if r["agrees"] else "FAIL")
            print(f"{m['id']:30s} {name:20s} {r['people']:6d} {value:>9s} {drop:>7s} {dev:>9s} {a02:>9s} {a05:>9s} {gate}")


def add_arguments(p) -> None:
    p.add_argument("manifest", type=Path)
    p.add_argument("--images", type=Path, required=True, help="folder of the annotated images")
    p.add_argument("--annotations", type=Path, required=True,
                   help="COCO-format keypoint JSON (OKS AP) or mmpose's MPII JSON (PCKh)")
    p.add_argument("--ids", help="comma-separated model ids (default: every model that predicts the annotated keypoints)")
    p.add_argument("--no-original", action="store_true", help="skip running the original (no recipe code, no checkpoint)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.add_argument("--allow-none", action="store_true",
                   help="where no model predicts the annotated keypoints, say so and exit 0 (scripts that "
                        "evaluate whatever a build holds)")
    cluster.add_arguments(p, "shard the people over Ray tasks")


def run(args) -> int:
    from posezoo.converters.sources import Resolver

    ann = read_annotations(args.annotations, args.images)
    resolver = Resolver(cache_dir=args.cache, mirror_dir=args.mirror, offline=args.offline)
    ids = [i.strip() for i in args.ids.split(",")] if args.ids else None
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    if args.ray:
        with cluster.connected(args.ray, log) as ray:
            report = evaluate(args.manifest, ann, resolver, ids, not args.no_original, args.threads, log,
                              progress=True, ray=ray, ray_cpus=args.ray_cpus)
    else:
        report = evaluate(args.manifest, ann, resolver, ids, not args.no_original, args.threads, log, progress=True)
    if not report["models"]:
        why = (f"no model of {args.manifest} predicts the keypoints {ann.names} of {args.annotations}: "
               "nothing to evaluate (COCO AP needs COCO's 17 keypoint names, PCKh MPII's 16)")
        if args.allow_none:
            log(f"note: {why}")
            return 0
        raise EvalError(why)
    from posezoo.converters.fileio import atomic_write_text

    out = Path(args.manifest).parent / "eval" / f"{Path(args.annotations).stem}.json"
    if out.exists():  # an earlier run on the same annotations: keep its other models
        earlier = json.loads(out.read_text())
        ours = {m["id"] for m in report["models"]}
        report["models"] = [m for m in earlier["models"] if m["id"] not in ours] + report["models"]
    atomic_write_text(out, json.dumps(report, indent=1))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_table(report)
        print(f"wrote {out}")
    return 0
