#!/usr/bin/env bash
# Installs the prebuilt OHIF Viewer v3 (@ohif/app from the npm registry: it ships a built dist/) into
# .ohif/dist, outside git. `curata serve` serves it at the site root with a generated app-config.js.
# Only the package's own tarball is fetched (npm pack): no dependency tree, no build step.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${OHIF_VERSION:-3.13.2}"
DEST=.ohif
if [ -f "$DEST/dist/index.html" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "curata: npm is needed for the OHIF viewer (apt-get install npm)" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "curata: fetching @ohif/app@$VERSION from the npm registry" >&2
( cd "$tmp" && npm pack --silent "@ohif/app@$VERSION" >/dev/null )
tar -xzf "$tmp"/ohif-app-*.tgz -C "$tmp"
[ -f "$tmp/package/dist/index.html" ] || { echo "curata: @ohif/app@$VERSION has no dist/index.html" >&2; exit 1; }
rm -rf "$DEST.new" && mkdir -p "$DEST.new"
mv "$tmp/package/dist" "$DEST.new/dist"
cp "$tmp/package/LICENSE" "$DEST.new/LICENSE" 2>/dev/null || true
echo "$VERSION" > "$DEST.new/VERSION"
rm -rf "$DEST" && mv "$DEST.new" "$DEST"
echo "curata: OHIF viewer $VERSION installed in $DEST/dist" >&2
