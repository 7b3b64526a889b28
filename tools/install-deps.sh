#!/bin/sh
# Install what magpie needs to build, test and benchmark on Debian 12 (run as root). clang and
# libclang-rt-dev (libFuzzer, sanitizer runtimes) build the fuzz targets in build-fuzz.
set -eu
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    build-essential meson ninja-build pkg-config python3 clang libclang-rt-dev \
    libopenslide-dev libvips-dev libopenblas-dev libsqlite3-dev libtiff-dev \
    libjansson-dev libcsv-dev libxxhash-dev libturbojpeg0-dev libpng-dev zlib1g-dev \
    libvips-tools openslide-tools libtiff-tools sqlite3 \
    python3-openslide python3-pil python3-tifffile python3-numpy fonts-dejavu-core >/dev/null
# magpie run's report test renders report.html in a headless browser
$SUDO apt-get install -y -qq --no-install-recommends \
    chromium >/dev/null
# the SLURM scale-out test starts a one-node cluster (tests/slurm)
$SUDO apt-get install -y -qq --no-install-recommends \
    slurm-wlm munge >/dev/null
# magpie view: libmicrohttpd for its HTTP server, npm to fetch OpenSeadragon (embedded at build time)
$SUDO apt-get install -y -qq --no-install-recommends \
    libmicrohttpd-dev >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends \
    curl >/dev/null
command -v npm >/dev/null || $SUDO apt-get install -y -qq --no-install-recommends \
    nodejs npm >/dev/null
sh "$(dirname "$0")/fetch-openseadragon.sh"
echo "magpie: dependencies installed"
