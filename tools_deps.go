//go:build tools

// Package tools pins the modules the project's packages use, so that
// every package owner finds them in go.mod from the first commit.
package tools

import (
	_ "github.com/cespare/xxhash/v2"
	_ "github.com/diskfs/go-diskfs"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/pierrec/lz4/v4"
	_ "github.com/rogpeppe/go-internal/testscript"
	_ "github.com/spf13/cobra"
	_ "github.com/stretchr/testify/require"
	_ "github.com/ulikunitz/xz"
	_ "github.com/vbauerster/mpb/v8"
	_ "golang.org/x/sys/unix"
	_ "golang.org/x/term"
)
