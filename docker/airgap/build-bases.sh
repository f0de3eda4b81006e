#!/bin/sh
# Base images built from a Debian mirror, for sites whose Docker engine reaches no container registry
# (air-gapped machines, CI without Docker Hub). Needs root, debootstrap and a running Docker engine.
#
#   sudo docker/airgap/build-bases.sh                  # then: make compose-up-cpu GACD_BASES=airgap
#
# It makes two images, both Debian 12 (bookworm) from the same root file system:
#   gacd-base/python:3.11-bookworm  Debian's Python 3.11 and pip: the base of docker/api.Dockerfile and
#                                   docker/worker.Dockerfile in place of python:3.11-slim-bookworm
#   gacd-base/redis:7-bookworm      Debian's redis-server (7.0): the job store in place of redis:7.4
# docker-compose.airgap.yml (used with -f after the other files) points the stack at them.
#
# Settings (environment): DEBIAN_MIRROR (default http://deb.debian.org/debian, or your own mirror),
# WORKDIR (where the root file system is made; default a temporary directory, removed at the end),
# EXTRA_CA_DIR (default /usr/local/share/ca-certificates: the site's own certificate authorities, for a
# private mirror or a TLS-inspecting proxy, trusted in the images as they are on the host).
set -eu

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
PACKAGES=python3,python3-pip,python3-venv,python-is-python3,ca-certificates,redis-server
WORK=${WORKDIR:-$(mktemp -d)}
ROOTFS=$WORK/rootfs
PYTHON_IMAGE=${PYTHON_IMAGE:-gacd-base/python:3.11-bookworm}
REDIS_IMAGE=${REDIS_IMAGE:-gacd-base/redis:7-bookworm}

if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR"
fi
# Images own their Python: pip may install into the system interpreter (PEP 668's marker is Debian's
# guard for a shared system, which a container is not), as it does in the python:3.11 images.
rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
CA_DIR=${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}
if ls "$CA_DIR"/*.crt >/dev/null 2>&1; then
    mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
    cp "$CA_DIR"/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
    chroot "$ROOTFS" update-ca-certificates >/dev/null
fi
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/tmp/* "$ROOTFS"/var/log/*.log

ENV_PATH='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change "$ENV_PATH" --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --message "Debian $SUITE (debootstrap from $MIRROR): $PACKAGES" - "$PYTHON_IMAGE"
# --protected-mode no, as the redis:7 images' entrypoint adds: the API and the workers reach Redis from
# other containers, and it has no port outside the compose network (docker-compose.airgap.yml's command
# says so again, since a compose command replaces this CMD).
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change "$ENV_PATH" --change 'WORKDIR /data' --change 'CMD ["redis-server", "--protected-mode", "no"]' \
    --message "Debian $SUITE redis-server (debootstrap from $MIRROR)" - "$REDIS_IMAGE"
if [ -z "${WORKDIR:-}" ]; then
    rm -rf "$WORK"
fi
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^gacd-base/'
