#!/usr/bin/env bash
# System-level extras the tests and benchmarks use, installed by `make install`.
# - blender-data: 8 CC0 HDR panoramas used as real radiance for simulated brackets.
# - chromium + chromium-driver: the headless browser that tests `gmodiff serve`'s page.
# Each step is best-effort: tests that need a missing extra skip with a reason.
set -u
apt_updated=0
apt_install() {  # apt_install PACKAGE... (root + apt-get only; one `apt-get update` per run)
  command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ] || return 1
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null 2>&1 && apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
}
if [ ! -d /usr/share/blender/datafiles/studiolights/world ]; then
  apt_install blender-data \
    || echo "install-system: could not install blender-data (not root, no apt-get or no network; panorama benchmarks will skip)"
fi
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  apt_install chromium chromium-driver \
    || echo "install-system: could not install chromium + chromium-driver (the web page's browser test will skip)"
fi
# - tools/node_modules: @monogrid/gainmap-js (exact pin in tools/package-lock.json) for the
#   independent Ultra HDR decode check, and the HDR images of @pmndrs/assets and
#   three-envmap-helper (split into train / evaluation-only in docs/data.md; benchmarks/ood.py);
#   skipped (tests skip with a reason) when node is absent.
if command -v npm >/dev/null 2>&1 && [ -f tools/package-lock.json ]; then
  npm ci --prefix tools --no-audit --no-fund --loglevel=error >/dev/null 2>&1 \
    || npm install --prefix tools --no-audit --no-fund --loglevel=error >/dev/null 2>&1 \
    || echo "install-system: npm could not install tools/ (the gainmap-js check will skip)"
else
  echo "install-system: node/npm not found; the gainmap-js Ultra HDR check will skip"
fi
exit 0
