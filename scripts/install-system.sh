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
exit 0
