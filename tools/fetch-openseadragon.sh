#!/bin/sh
# Fetch OpenSeadragon (npm package `openseadragon`, pinned) into view/vendor/openseadragon, where
# the build embeds it into `magpie view` (view/meson.build). Run by tools/install-deps.sh; needs
# npm and the registry once, never at run time (the page works offline, no CDN).
set -eu
VERSION=6.1.1
cd "$(dirname "$0")/.."
dest=view/vendor/openseadragon
if [ -f "$dest/openseadragon.min.js" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$VERSION" ]; then
    echo "openseadragon $VERSION: already in $dest"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# npm pack checks the tarball against the registry's integrity hash
(cd "$tmp" && npm pack --silent "openseadragon@$VERSION" >/dev/null)
tar -xzf "$tmp/openseadragon-$VERSION.tgz" -C "$tmp"
rm -rf "$dest"
mkdir -p "$dest/images"
cp "$tmp/package/build/openseadragon/openseadragon.min.js" "$tmp/package/LICENSE.txt" "$dest/"
cp "$tmp/package/build/openseadragon/images/"*.png "$dest/images/"
echo "$VERSION" >"$dest/VERSION"
echo "openseadragon $VERSION: fetched into $dest"
