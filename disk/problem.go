package disk

import "fmt"

// Problem is one inconsistency a format's check found in an image file,
// with the file and the offset it concerns (qemu-img check's report).
type Problem struct {
	File string `json:"file"`
	// Offset is where in File; -1 when the problem has no single place (a
	// manifest's digest, a stream that ends early).
	Offset int64  `json:"offset"`
	What   string `json:"what"`
}

// Problemf is a Problem described by a format string.
func Problemf(file string, off int64, format string, args ...any) Problem {
	return Problem{File: file, Offset: off, What: fmt.Sprintf(format, args...)}
}

func (p Problem) String() string {
	if p.Offset < 0 {
		return fmt.Sprintf("%s: %s", p.File, p.What)
	}
	return fmt.Sprintf("%s at %#x: %s", p.File, p.Offset, p.What)
}
