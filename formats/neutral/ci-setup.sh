#!/usr/bin/env bash
# Builds SeaweedFS's weed, the real S3 server the chunk store's s3:// tests
# start, and caches it; prints the binary's path. `go install` refuses the
# module (it has replace lines), so it is built as the main module from a
# writable copy of its folder. Takes ~8 min on 2 cores the first time.
set -euo pipefail
version=v0.0.0-20261109003541-7506e5f91cd6
cache="${XDG_CACHE_HOME:-$HOME/.cache}/vmconv/seaweedfs/$version"
bin="$cache/weed"
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$cache"
dir=$(go mod download -json "github.com/seaweedfs/seaweedfs@$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "ci-setup: go mod download gave no Dir for seaweedfs@$version" >&2; exit 1; }
src=$(mktemp -d "$cache/src.XXXXXX")
trap 'chmod -R u+w "$src"; rm -rf "$src"' EXIT
cp -r "$dir/." "$src/"
chmod -R u+w "$src"
(cd "$src" && GOFLAGS="-mod=mod -buildvcs=false" go build -o "$bin.tmp" ./weed)
mv "$bin.tmp" "$bin"
echo "$bin"
