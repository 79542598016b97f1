package xfs

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmconv/vmconv/internal/testutil"
)

// A file mkfs wrote as one extent is split with xfs_db into many records,
// one of them marked unwritten and one shortened to leave a hole: the
// reader must return the data with those ranges as zeros.
func TestSplitExtents(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []string
		fork  string // xfs_db's name of the inode's data fork
		size  int
		parts int
	}{
		{"v5 4k", []string{"-d", "agcount=2"}, "u3", 40<<20 + 1, 12},
		{"v4 1k 256-byte inodes", []string{"-m", "crc=0", "-b", "size=1024", "-i", "size=256", "-d", "agcount=2"}, "u", 6<<20 + 333, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := tree{}
			data := random(t, tc.size)
			tr.file("big", data)
			tr.file("small", []byte("small\n"))
			img := mkfs(t, tr, 128<<20, tc.opts...)
			f := open(t, img)
			bs := int(f.BlockSize())
			var start, agno, agbno, off, count, flag int64
			_, err := fmt.Sscanf(xfsDB(t, img, "path /big", "bmap"), "data offset %d startblock %d (%d/%d) count %d flag %d", &off, &start, &agno, &agbno, &count, &flag)
			require.NoError(t, err)
			require.Equal(t, int64((tc.size+bs-1)/bs), count, "mkfs wrote one extent")

			want := append([]byte(nil), data...)
			per := count / int64(tc.parts)
			cmds := []string{"-x", "-c", "path /big", "-c", "write core.nextents " + strconv.Itoa(tc.parts)}
			for i := int64(0); i < int64(tc.parts); i++ {
				n := per
				if i == int64(tc.parts)-1 {
					n = count - i*per
				}
				unwritten := 0
				switch i {
				case 3: // preallocated: zeros
					unwritten = 1
					clear(want[i*per*int64(bs) : (i*per+n)*int64(bs)])
				case 5: // the second half becomes a hole: zeros
					n /= 2
					clear(want[(i*per+n)*int64(bs) : (i+1)*per*int64(bs)])
				}
				rec := fmt.Sprintf("%s.bmx[%d]", tc.fork, i)
				cmds = append(cmds, "-c", fmt.Sprintf("write %s.startoff %d", rec, i*per),
					"-c", fmt.Sprintf("write %s.startblock %d", rec, start+i*per),
					"-c", fmt.Sprintf("write %s.blockcount %d", rec, n),
					"-c", fmt.Sprintf("write %s.extentflag %d", rec, unwritten))
			}
			testutil.Run(t, "xfs_db", append(cmds, img)...)
			assert.Equal(t, tc.parts, extentCount(t, img, "/big"))

			got, err := f.ReadFile("/big", MaxFileSize)
			require.NoError(t, err)
			assert.Len(t, got, tc.size)
			assert.True(t, bytes.Equal(want, got), "split file differs")
			assert.False(t, bytes.Equal(data, got), "the unwritten extent and the hole read as zeros")
			got, err = f.ReadFile("/small", 100)
			require.NoError(t, err)
			assert.Equal(t, "small\n", string(got))
		})
	}
}

func TestUUIDLabel(t *testing.T) {
	tr := tree{}
	tr.file("f", []byte("x"))
	for _, tc := range []struct {
		name string
		opts []string
	}{
		{"v5", nil},
		{"v4", []string{"-m", "crc=0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const uuid = "0b6e1c2a-54d3-4f6e-9a7b-1c2d3e4f5a6b"
			opts := append([]string{"-L", "boot-xfs", "-m", "uuid=" + uuid}, tc.opts...)
			f := open(t, mkfs(t, tr, 32<<20, opts...))
			assert.Equal(t, uuid, f.UUID())
			assert.Equal(t, "boot-xfs", f.Label())
		})
	}
}

// BenchmarkReadKernel reads a 13 MiB kernel and a 50 MiB initramfs through
// their path, as the boot finder does.
func BenchmarkReadKernel(b *testing.B) {
	tr := tree{}
	tr.file("boot/vmlinuz-6", random(b, 13<<20))
	tr.file("boot/initramfs-6.img", random(b, 50<<20))
	f := open(b, mkfs(b, tr, 128<<20, "-d", "agcount=2"))
	b.SetBytes(63 << 20)
	for b.Loop() {
		for _, p := range []string{"/boot/vmlinuz-6", "/boot/initramfs-6.img"} {
			if _, err := f.ReadFile(p, MaxFileSize); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// The remote symlinks the tests rewrite are what xfs_repair expects (it
// would junk mkfs's own), and read back through the XSLM header.
func TestRemoteSymlinkRepaired(t *testing.T) {
	repair := testutil.RequireTool(t, "xfs_repair")
	tr := tree{}
	tr.file("boot/grub2/grub.cfg", []byte("set default=0\n"))
	long := strings.Repeat("../boot/", 110) + "grub2/grub.cfg"
	tr.symlink("boot/long", long)
	for _, bs := range []string{"1024", "4096"} {
		t.Run(bs, func(t *testing.T) {
			img := mkfs(t, tr, 32<<20, "-b", "size="+bs)
			require.Equal(t, "2", format(t, img, "/boot/long"), "a remote symlink")
			out, err := exec.Command(repair, "-n", img).CombinedOutput()
			require.NoError(t, err, "xfs_repair -n: %s", out)
			f := open(t, img)
			got, err := f.Readlink("/boot/long")
			require.NoError(t, err)
			assert.Equal(t, long, got)
			b, err := f.ReadFile("/boot/long", 100)
			require.NoError(t, err)
			assert.Equal(t, "set default=0\n", string(b))
		})
	}
}
