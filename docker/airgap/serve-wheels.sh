#!/bin/sh
# Serve a wheelhouse (a folder of .whl files, e.g. the torch and nvidia-* wheels from `pip download`)
# to image builds on this machine, at http://127.0.0.1:${PORT:-8765}/, until stopped:
#
#   docker/airgap/serve-wheels.sh /srv/wheels &
#   GACD_PIP_FIND_LINKS=http://127.0.0.1:8765/ docker-compose -f docker-compose.cpu.yml \
#       -f docker/airgap/docker-compose.airgap.yml build
#
# pip takes a wheel from these links before the index when both have the same version.
set -eu
exec python3 -m http.server --bind 127.0.0.1 --directory "${1:?usage: serve-wheels.sh DIR}" "${PORT:-8765}"
