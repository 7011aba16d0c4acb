#!/usr/bin/env bash
# System-level extras the tests and benchmarks use, installed by `make install`.
# - blender-data: 8 CC0 HDR panoramas used as real radiance for simulated brackets.
# Each step is best-effort: tests that need a missing extra skip with a reason.
set -u
if [ ! -d /usr/share/blender/datafiles/studiolights/world ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends blender-data) \
      >/dev/null 2>&1 || echo "install-system: could not install blender-data (panorama benchmarks will skip)"
  else
    echo "install-system: not root or no apt-get; install 'blender-data' yourself for panorama benchmarks"
  fi
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
