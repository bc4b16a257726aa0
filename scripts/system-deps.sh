#!/usr/bin/env bash
# Installs the Debian packages Curata's integration tests and benchmarks run against.
# Real peers, not mocks: dcmtk and Orthanc (DICOM networking), dicom3tools (dciodvfy),
# tesseract (burned-in text OCR), dcm2niix (conversion reference), gdcm (benchmark peer),
# elastix (registration reference), chromium and chromium-driver (reports and the web platform checked in a real browser),
# npm (fetches the prebuilt OHIF viewer, scripts/ohif.sh), libturbojpeg0 (opentile cuts NDPI stripes into tiles losslessly),
# libdcmtk-dev and g++ (the gateway's dcmtk front end, curata-spool-scp, is built from src/curata/collect/net/spoolscp),
# gcc and python3-dev (the engine's compiled core: Cython builds it at install, src/curata/_compiled.py).
set -euo pipefail
PKGS=(dcmtk orthanc orthanc-dicomweb dicom3tools tesseract-ocr tesseract-ocr-eng dcm2niix libgdcm-tools elastix chromium chromium-driver libturbojpeg0 libdcmtk-dev g++ gcc python3-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm fetches the prebuilt OHIF viewer (scripts/ohif.sh); a Node.js install may already bring its own.
command -v npm >/dev/null || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "curata: installing Debian packages: ${missing[*]}" >&2
# Packages must not start their daemons (Orthanc): the tests start their own on loopback.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
