#!/bin/sh
# Make a local Debian bookworm base image with Python 3.11, for building the CPU image where no
# image registry can be reached (`make docker` calls this only when `docker pull` fails).
# It stands in for python:3.11-slim-bookworm: Debian's minimal base (debootstrap minbase, what
# debian:bookworm-slim is made from) plus python3 and python3-venv, nothing else.
#
#   docker/bookworm-base.sh IMAGE_TAG [MIRROR]
#
# Needs root, debootstrap and a reachable Debian mirror.
set -eu
tag=${1:?usage: docker/bookworm-base.sh IMAGE_TAG [MIRROR]}
mirror=${2:-http://deb.debian.org/debian}
root=$(mktemp -d "${TMPDIR:-/tmp}/streammatte-rootfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$mirror"
# what debian:bookworm-slim also leaves out: package lists, caches, docs and man pages
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/*
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' - "$tag"
