#!/usr/bin/env bash
# Installs the test components that are not plain PyPI dependencies of the `test` extra
# (each section says what and why). Idempotent, and fast when its caches are warm.
set -euo pipefail
cd "$(dirname "$0")/.."

# ---- studio: Debian's chromium for the browser test, npm assets (LiteGraph.js, Chart.js) ----
# Playwright drives /usr/bin/chromium (its own browser download cannot work here). The wheel
# build fetches the studio's JavaScript with npm; where npm was missing then, fetch it now
# into the installed package (run outside the source tree so the installed one is found).
if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! command -v npm >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
fi
(cd / && python -m pyggml_train.studio.assets)
