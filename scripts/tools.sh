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
