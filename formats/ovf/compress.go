package ovf

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strings"
)

// gzipped reports whether a file's ovf:compression says gzip (as ovftool
// --compress writes it); "" and "identity" mean stored as is.
func gzipped(c string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(c)) {
	case "", "identity":
		return false, nil
	case "gzip":
		return true, nil
	}
	return false, fmt.Errorf("ovf:compression=%q: want gzip or identity", clip(c))
}

// errInflated is a compressed file that expands past what its disk can hold.
var errInflated = errors.New("decompresses to more than its disk can hold")

// inflateLimit bounds what a compressed file may expand to: a disk of
// capacity bytes in any format fits in twice that plus metadata; an ISO's
// size is unknown, so it gets 64 GiB.
func inflateLimit(capacity int64, device string) int64 {
	if device == "cdrom" || capacity <= 0 {
		return 64 << 30
	}
	return 2*capacity + 64<<20
}

// gunzip returns r decompressed, failing once more than limit bytes come
// out (a gzip bomb never fills the disk).
func gunzip(r io.Reader, limit int64) (io.Reader, error) {
	z, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("ovf:compression=gzip: %w", err)
	}
	return &limited{r: z, left: limit}, nil
}

type limited struct {
	r    io.Reader
	left int64
}

func (l *limited) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, errInflated
	}
	return n, err
}
