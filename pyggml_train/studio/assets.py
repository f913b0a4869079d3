"""The studio's third-party JavaScript: fetched with npm, pinned by frontend/package-lock.json.

Third-party code is never committed. The wheel build (cmake/StudioAssets.cmake) runs this
file as a script, which installs the locked packages with ``npm ci`` in a scratch directory
and copies the few files the page loads into ``static/vendor/``. Where npm was missing at
build time, ``python -m pyggml_train.studio.assets`` fetches them into the installed package
later. Standard library only: CMake runs this file before the extension exists.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FRONTEND = HERE / "frontend"  # package.json + package-lock.json (ours)
VENDOR = HERE / "static" / "vendor"  # where the page loads them from

# file under static/vendor/ -> file inside node_modules/
FILES = {
    "litegraph.core.js": "litegraph.js/build/litegraph.core.js",
    "litegraph.css": "litegraph.js/css/litegraph.css",
    "LICENSE.litegraph.js": "litegraph.js/LICENSE",
    "chart.umd.min.js": "chart.js/dist/chart.umd.min.js",
    "LICENSE.chart.js": "chart.js/LICENSE.md",
    "dagre.min.js": "@dagrejs/dagre/dist/dagre.min.js",
    "LICENSE.dagre": "@dagrejs/dagre/LICENSE",
}
_STAMP = ".lock-sha256"  # hash of the lock file the vendor files came from


def _lock_hash() -> str:
    return hashlib.sha256((FRONTEND / "package-lock.json").read_bytes()).hexdigest()


def missing(vendor: Path = VENDOR) -> list[str]:
    """Vendor files that are absent or came from another lock file (empty when complete)."""
    stamp = vendor / _STAMP
    if not stamp.is_file() or stamp.read_text().strip() != _lock_hash():
        return sorted(FILES)
    return [name for name in FILES if not (vendor / name).is_file()]


def how_to_fetch() -> str:
    """What a user runs to get the assets, for the studio's error message."""
    return (
        "the studio's JavaScript (LiteGraph.js, Chart.js, dagre; pinned in "
        f"{FRONTEND / 'package-lock.json'}) is not installed in {VENDOR}: npm was not found "
        "when pyggml_train was built. Install Node.js with npm (Debian: apt-get install npm), "
        "then run `python -m pyggml_train.studio.assets`, or reinstall pyggml_train with npm "
        "on PATH"
    )


def fetch(vendor: Path = VENDOR) -> Path:
    """npm ci the locked packages in a scratch directory; copy FILES into vendor."""
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError(how_to_fetch())
    vendor.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pyggml-studio-npm-") as tmp:
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(FRONTEND / name, Path(tmp) / name)
        cmd = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"]
        subprocess.run(cmd, cwd=tmp, check=True, stdout=sys.stderr)
        for name, src in FILES.items():
            shutil.copy2(Path(tmp) / "node_modules" / src, vendor / name)
    (vendor / _STAMP).write_text(_lock_hash() + "\n")
    return vendor


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=VENDOR, help="vendor directory to fill")
    p.add_argument("--if-npm", action="store_true", help="only warn (exit 0) when npm is missing")
    args = p.parse_args(argv)
    if not missing(args.out):
        print(f"studio assets up to date in {args.out}", file=sys.stderr)
        return 0
    if args.if_npm and shutil.which("npm") is None:
        print(f"warning: {how_to_fetch()}", file=sys.stderr)
        return 0
    fetch(args.out)
    print(f"studio assets fetched into {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
