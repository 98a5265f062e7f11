"""What pip and npm install: one `posezoo` package (no top-level `zoo`, `scripts`, `recipes` or
`converters`), the runtime side alone as `posezoo-runtime` (numpy and the format's runtime, no
torch or TensorFlow), and the page's JavaScript as an ES module package."""
import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"posezoo": "zoo", "posezoo.converters": "converters", "posezoo.recipes": "recipes",
           "posezoo.scripts": "scripts"}


def _project(path: Path) -> dict:
    return tomllib.loads(path.read_text())


def _wheel(source: Path, folders, into: Path) -> Path:
    """The wheel pip builds from a copy of `folders` of `source` (so no build output lands in the
    repository); the build backend is the one installed with posezoo."""
    copy = into / "src"
    for name in folders:
        target = copy / name
        if (source / name).is_dir():
            shutil.copytree(source / name, target, ignore=shutil.ignore_patterns("node_modules", "__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / name, target)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(into / "wheels"), str(copy)], check=True, capture_output=True)
    (wheel,) = (into / "wheels").glob("*.whl")
    return wheel


def test_every_package_folder_is_installed_under_posezoo():
    setuptools = _project(REPO / "pyproject.toml")["tool"]["setuptools"]
    assert setuptools["package-dir"] == FOLDERS
    found = set()
    for name, folder in FOLDERS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            if "node_modules" not in init.parts:
                found.add(".".join([name, *init.parent.relative_to(REPO / folder).parts]))
    assert sorted(setuptools["packages"]) == sorted(found), "list every package folder in pyproject.toml"


def test_the_runtime_project_is_the_zoo_folder_at_the_same_version():
    full, runtime = _project(REPO / "pyproject.toml"), _project(REPO / "zoo" / "pyproject.toml")
    assert runtime["project"]["version"] == full["project"]["version"]
    assert runtime["project"]["dependencies"] == ["numpy>=1.24"]
    assert runtime["tool"]["setuptools"]["package-dir"] == {"posezoo": "."}
    web = json.loads((REPO / "zoo" / "web" / "package.json").read_text())
    assert web["version"] == full["project"]["version"] and web["type"] == "module"
    assert web["exports"] == {".": "./posezoo.js"}


def test_the_full_wheel_installs_one_package(tmp_path):
    wheel = _wheel(REPO, ["pyproject.toml", "README.md", *FOLDERS.values()], tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"posezoo", "posezoo-0.1.0.dist-info"}
    for path in ("posezoo/__init__.py", "posezoo/loader.py", "posezoo/manifest.schema.json", "posezoo/web/posezoo.js",
                 "posezoo/converters/pipeline.py", "posezoo/recipes/recipe.schema.json",
                 "posezoo/recipes/blazepose/recipe.yaml", "posezoo/scripts/bench/cli.py"):
        assert path in names
    entry = zipfile.ZipFile(wheel).read("posezoo-0.1.0.dist-info/entry_points.txt").decode()
    assert "posezoo = posezoo.scripts.cli:main" in entry


def test_the_runtime_wheel_holds_the_runtime_side_only(tmp_path):
    wheel = _wheel(REPO / "zoo", ["."], tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    files = {n for n in names if not n.startswith("posezoo_runtime-")}
    assert {"posezoo/__init__.py", "posezoo/loader.py", "posezoo/decoders.py", "posezoo/manifest.py",
            "posezoo/schema.py", "posezoo/runtime.py", "posezoo/manifest.schema.json", "posezoo/web/posezoo.js"} <= files
    assert not [n for n in files if "/converters/" in n or "/recipes/" in n or "/scripts/" in n or "node_modules" in n]


def test_posezoo_load_is_the_loaders_and_imported_on_first_use():
    code = ("import sys, posezoo.errors; before = 'numpy' in sys.modules; import posezoo, posezoo.loader; "
            "print(before, posezoo.load is posezoo.loader.load, posezoo.LoaderError is posezoo.loader.LoaderError)")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True"]


def test_the_javascript_package_is_the_page_module():
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    packed = subprocess.run(["npm", "pack", "--dry-run", "--json"], cwd=REPO / "zoo" / "web", capture_output=True,
                            text=True, check=True)
    (package,) = json.loads(packed.stdout)
    assert package["name"] == "posezoo-runtime" and sorted(f["path"] for f in package["files"]) == [
        "package.json", "posezoo.js", "widen.js"]


# ---------------------------------------------------------------------------------------- slow

PREDICT = """
import json, sys
from pathlib import Path
import numpy as np
import posezoo
from posezoo import golden
manifest, photos = Path(sys.argv[1]), json.loads(sys.argv[2])
result = {}
for model in json.loads(manifest.read_text())["models"]:
    for a in model["artifacts"]:
        predict = posezoo.load(manifest, model["id"], a["format"], a["precision"], a["origin"])
        key = f"{model['id']} {a['format']} {a['precision']} {a['origin']}"
        result[key] = [predict(np.load(p)).keypoints.tolist() for p in photos]
        report = golden.check_artifact(predict, manifest.parent, a)
        result[key + " golden"] = [report["passed"], report["keypoints_within"]]
print(json.dumps(result))
"""


@pytest.mark.slow
def test_the_runtime_package_alone_runs_every_artifact_as_the_full_install_does(zoo, images, tmp_path):
    """A fresh venv with posezoo-runtime[onnx,tflite] only (the versions of the lock file): no
    torch, TensorFlow, onnx or PIL importable; every artifact of a built folder gives the
    keypoints the full install gives, to the bit, and passes its golden vectors."""
    wheel = _wheel(REPO / "zoo", ["."], tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--quiet", "-c", REPO / "requirements" / "lock.txt",
                    f"{wheel}[onnx,tflite]"], check=True, capture_output=True)
    for absent in ("torch", "tensorflow", "onnx", "PIL", "jsonschema", "posezoo.converters"):
        probe = subprocess.run([python, "-c", f"import {absent}"], capture_output=True, text=True)
        assert probe.returncode != 0 and "No module named" in probe.stderr, absent
    photos = []
    for i, path in enumerate([*sorted((images / "h36m").glob("*.jpg"))[:3], images / "single" / "squat.bmp"]):
        photos.append(str(tmp_path / f"{i}.npy"))
        np.save(photos[-1], np.asarray(Image.open(path).convert("RGB")))
    alone = subprocess.run([python, "-c", PREDICT, str(zoo), json.dumps(photos)], capture_output=True, text=True,
                           check=True, cwd=tmp_path)
    full = subprocess.run([sys.executable, "-c", PREDICT, str(zoo), json.dumps(photos)], capture_output=True,
                          text=True, check=True, cwd=tmp_path)
    alone, full = json.loads(alone.stdout), json.loads(full.stdout)
    assert len(alone) >= 10 and alone == full
    assert all(value == [True, 1.0] for key, value in alone.items() if key.endswith(" golden"))
