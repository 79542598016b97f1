#!/usr/bin/env bash
# Installs Xen Orchestra's XVA writer (@xen-orchestra/xva, pinned by
# package-lock.json) that the tests run to produce real XVA files.
set -euo pipefail
cd "$(dirname "$0")/testdata/xo"
if [ -f node_modules/@xen-orchestra/xva/_writeDisk.mjs ] && npm ls --silent >/dev/null 2>&1; then
	exit 0
fi
npm ci --no-audit --no-fund
