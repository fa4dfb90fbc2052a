#!/usr/bin/env bash
# Installs Debian's chromium (PDF printing) and poppler-utils (PDF checks) when missing.
# No browser is downloaded from anywhere else: Playwright drives this system chromium.
set -euo pipefail
need=()
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils)
fc-list 2>/dev/null | grep -qi dejavu || need+=(fonts-dejavu-core)
[ ${#need[@]} -eq 0 ] && exit 0
echo "Installing Debian packages: ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "Not root and no sudo: ask an administrator to run: apt-get install ${need[*]}" >&2
    echo "(HTML reports work without chromium; PDFs need it.)" >&2
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "No apt-get here: install ${need[*]} with your system's package manager (HTML reports still work without them)." >&2
  exit 0
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
