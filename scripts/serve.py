"""`posezoo serve DIR`: writes DIR's site (scripts/site.py) and serves the folder on localhost,
offline, cross-origin isolated (scripts/webserver.py); `--check` runs every artifact in the try-it
page in headless Chromium and compares it with posezoo.loader (scripts/browser.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from posezoo.scripts.site import sample_photos, write_site
from posezoo.scripts.webserver import make_server, read_build


def add_arguments(p) -> None:
    p.add_argument("directory", type=Path, help="a build folder with manifest.json")
    p.add_argument("--images", type=Path, help="sample photos (with annotation files) for the page; default: "
                                                "$POSEZOO_CALIBRATION_IMAGES")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--check", action="store_true",
                   help="instead of serving: run every artifact in the page in headless Chromium and compare its "
                        "keypoints with posezoo.loader's on the sample photos; exit 1 on any disagreement")
    p.add_argument("--ids", help="with --check: comma-separated model ids")
    p.add_argument("--json", action="store_true", help="with --check: the rows as JSON")


def run(args) -> int:
    manifest = read_build(args.directory)
    if args.check:
        from posezoo.converters.fingerprint import photos_for
        from posezoo.scripts.browser import Page, agreement_table

        ids = [i.strip() for i in args.ids.split(",")] if args.ids else None
        with Page(args.directory, photos_for(manifest, args.images, "--images")) as page:
            rows = page.agreement(Path(args.directory) / "manifest.json", ids)
        print(json.dumps(rows, indent=1) if args.json else agreement_table(rows))
        return 0 if all(r["passed"] for r in rows) else 1
    write_site(args.directory, sample_photos(manifest, args.images))
    server = make_server(args.directory, args.port)
    print(f"posezoo: http://127.0.0.1:{server.server_address[1]}/  (Ctrl-C stops)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
