package neutral

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
)

// One SeaweedFS server for the package's tests, started by the first test
// that needs it and stopped by TestMain.
var seaweed struct {
	once    sync.Once
	srv     *testutil.Seaweed
	dir     string
	err     error
	buckets atomic.Int64
}

func TestMain(m *testing.M) {
	// The AWS SDK signs every request; weed without identities takes any
	// key. Point the SDK's files away so a developer's own are not used.
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "vmconv-test", "AWS_SECRET_ACCESS_KEY": "vmconv-test", "AWS_REGION": "us-east-1",
		"AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull, "AWS_EC2_METADATA_DISABLED": "true",
	} {
		os.Setenv(k, v)
	}
	os.Unsetenv("AWS_ENDPOINT_URL")
	os.Unsetenv("AWS_PROFILE")
	if spec := os.Getenv(writerEnv); spec != "" {
		os.Exit(writerProcess(spec))
	}
	code := m.Run()
	if seaweed.srv != nil {
		seaweed.srv.Stop()
	}
	if seaweed.dir != "" {
		os.RemoveAll(seaweed.dir)
	}
	os.Exit(code)
}

// s3Store returns the URL of a store in a new bucket of the test server,
// under a prefix.
func s3Store(t *testing.T) string {
	t.Helper()
	weed := testutil.WeedPath()
	if weed == "" {
		testutil.Unavailable(t, "weed (SeaweedFS) is not built: run formats/neutral/ci-setup.sh or set VMCONV_WEED")
	}
	seaweed.once.Do(func() {
		if seaweed.dir, seaweed.err = os.MkdirTemp("", "vmconv-seaweed-"); seaweed.err == nil {
			seaweed.srv, seaweed.err = testutil.StartSeaweed(weed, seaweed.dir)
		}
	})
	require.NoError(t, seaweed.err)
	bucket := fmt.Sprintf("vmconv-%d", seaweed.buckets.Add(1))
	require.NoError(t, seaweed.srv.CreateBucket(bucket))
	return "s3://" + bucket + "/stores/one?endpoint=" + url.QueryEscape(seaweed.srv.Endpoint) + "&region=us-east-1&use_path_style=true"
}

func fileStore(t *testing.T) string { return "file://" + filepath.Join(t.TempDir(), "store") }

// storeKinds are the blob stores every blob store test runs against.
var storeKinds = []struct {
	name string
	url  func(t *testing.T) string
}{
	{"s3", s3Store},
	{"file", fileStore},
}

// storeObjects returns the keys of the chunks in a blob store (relative to
// its prefix).
func storeObjects(t *testing.T, store string) map[string]bool {
	t.Helper()
	b := openTestBucket(t, store)
	keys := map[string]bool{}
	it := b.List(nil)
	for {
		obj, err := it.Next(context.Background())
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		keys[obj.Key] = true
	}
	return keys
}

// openTestBucket opens the store's bucket, already narrowed to its prefix.
func openTestBucket(t *testing.T, store string) *blob.Bucket {
	t.Helper()
	u, err := parseStoreURL(store)
	require.NoError(t, err)
	b, err := u.open(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	if u.prefix != "" {
		b = blob.PrefixedBucket(b, u.prefix)
		t.Cleanup(func() { b.Close() })
	}
	return b
}

func chunkKey(content []byte) string {
	s := sha256.Sum256(content)
	h := hex.EncodeToString(s[:])
	return h[:2] + "/" + h
}

func byteImage(content []byte) disk.Image {
	return disk.FromReaderAt(bytes.NewReader(content), int64(len(content)))
}

func TestBlobStoreRoundTrip(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			store := kind.url(t)
			dir := t.TempDir()
			content := testContent(11, 40*ChunkSize+4097)
			want, err := disk.Digest(context.Background(), byteImage(content), disk.CopyOptions{})
			require.NoError(t, err)
			path := filepath.Join(dir, "vm.vmb")
			vm := testVM(Disk{ID: "sda", Device: "disk", Bus: "scsi", Image: byteImage(content)})
			writeTestBundle(t, path, vm, BundleOptions{Store: store})
			assert.Equal(t, want, vm.Disks[0].Digest)

			// The chunk list records the URL; the bundle holds no chunks.
			assert.Equal(t, store, readList(t, filepath.Join(path, "disks", "sda.json")).Store)
			_, err = os.Stat(filepath.Join(path, "chunks"))
			assert.ErrorIs(t, err, os.ErrNotExist)

			checkContent(t, path, content)
			got, err := OpenBundle(path)
			require.NoError(t, err)
			defer got.Close()
			d, err := disk.Digest(context.Background(), got.Disks[0].Image, disk.CopyOptions{})
			require.NoError(t, err)
			assert.Equal(t, want, d)

			// Every object is a zstd frame named by its content's SHA-256.
			b := openTestBucket(t, store)
			objs := storeObjects(t, store)
			require.NotEmpty(t, objs)
			for k := range objs {
				payload, err := b.ReadAll(context.Background(), k)
				require.NoError(t, err)
				sum, err := hex.DecodeString(filepath.Base(k))
				require.NoError(t, err)
				assert.NoError(t, decodeChunk(payload, (*[32]byte)(sum), make([]byte, chunkLenOf(t, payload))), k)
			}
		})
	}
}

// chunkLenOf is a stored chunk's decoded length.
func chunkLenOf(t *testing.T, payload []byte) int {
	dec, err := chunkDecoder()
	require.NoError(t, err)
	out, err := dec.DecodeAll(payload, make([]byte, 0, ChunkSize))
	require.NoError(t, err)
	return len(out)
}

// Two VMs cloned from one template: the second bundle uploads only the
// chunks it does not share with the first.
func TestBlobStoreDedupe(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			store := kind.url(t)
			dir := t.TempDir()
			const size = 64 * ChunkSize
			template := make([]byte, size)
			r := rand.New(rand.NewPCG(3, 4))
			for i := range template[:48*ChunkSize] {
				template[i] = byte(r.Uint32())
			}
			clone := func(changed ...int) []byte {
				b := bytes.Clone(template)
				for _, c := range changed {
					for i := c * ChunkSize; i < c*ChunkSize+512; i++ {
						b[i] = byte(r.Uint32())
					}
				}
				return b
			}
			vm1, vm2 := clone(3, 10), clone(3, 20, 30, 47)
			write := func(name string, content []byte) {
				vm := testVM(Disk{ID: "xvda", Device: "disk", Bus: "xen", Image: byteImage(content)})
				writeTestBundle(t, filepath.Join(dir, name+".vmb"), vm, BundleOptions{Store: store})
			}
			write("vm1", vm1)
			after1 := storeObjects(t, store)
			assert.Len(t, after1, 48, "48 data chunks")
			write("vm2", vm2)
			after2 := storeObjects(t, store)
			var added []string
			for k := range after2 {
				if !after1[k] {
					added = append(added, k)
				}
			}
			var want []string
			for _, c := range []int{3, 10, 20, 30, 47} {
				want = append(want, chunkKey(vm2[c*ChunkSize:(c+1)*ChunkSize]))
			}
			assert.ElementsMatch(t, want, added)
			checkContent(t, filepath.Join(dir, "vm1.vmb"), vm1)
			checkContent(t, filepath.Join(dir, "vm2.vmb"), vm2)
		})
	}
}

// overlapping is writer i's disk for the concurrent writer tests: 32 MiB
// shared by all, but for 8 chunks of its own.
func overlapping(i int) []byte {
	c := testContent(21, 32*ChunkSize)
	copy(c[(8+8*i)*ChunkSize:], testContent(uint64(100+i), 8*ChunkSize))
	return c
}

// writerEnv makes the test binary write one bundle and exit (see TestMain):
// "STORE PATH I" writes overlapping(I) to PATH with the store STORE.
const writerEnv = "VMCONV_TEST_BUNDLE_WRITER"

func writeOverlapping(store, path string, i int) error {
	content := overlapping(i)
	vm := testVM(Disk{ID: "d", Device: "disk", Bus: "virtio", Image: byteImage(content)})
	out := disk.NewOutput(false)
	if err := WriteBundle(context.Background(), out, path, vm, BundleOptions{Store: store, Copy: disk.CopyOptions{Workers: 2}}); err != nil {
		out.Abort()
		return err
	}
	return out.Commit()
}

// writerProcess is the test binary run as a writer.
func writerProcess(spec string) int {
	var store, path string
	var i int
	if _, err := fmt.Sscan(spec, &store, &path, &i); err != nil {
		fmt.Fprintln(os.Stderr, writerEnv, err)
		return 2
	}
	if err := writeOverlapping(store, path, i); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// Three writers, as goroutines with stores of their own or as processes,
// write overlapping bundles into one store at once: every bundle reads
// back, and the store holds each chunk once, intact.
func TestBlobStoreConcurrentWriters(t *testing.T) {
	inGoroutine := func(t *testing.T, store, path string, i int) {
		assert.NoError(t, writeOverlapping(store, path, i))
	}
	inProcess := func(t *testing.T, store, path string, i int) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d", writerEnv, store, path, i))
		out, err := cmd.CombinedOutput()
		assert.NoError(t, err, "writer %d: %s", i, out)
	}
	for _, kind := range storeKinds {
		for mode, write := range map[string]func(*testing.T, string, string, int){"goroutines": inGoroutine, "processes": inProcess} {
			t.Run(kind.name+"/"+mode, func(t *testing.T) {
				store := kind.url(t)
				dir := t.TempDir()
				wantKeys := map[string]bool{}
				for i := range 3 {
					c := overlapping(i)
					for off := 0; off < len(c); off += ChunkSize {
						if !disk.IsZero(c[off : off+ChunkSize]) {
							wantKeys[chunkKey(c[off:off+ChunkSize])] = true
						}
					}
				}
				var wg sync.WaitGroup
				for i := range 3 {
					wg.Go(func() { write(t, store, filepath.Join(dir, fmt.Sprint(i)+".vmb"), i) })
				}
				wg.Wait()
				for i := range 3 {
					checkContent(t, filepath.Join(dir, fmt.Sprint(i)+".vmb"), overlapping(i))
				}
				assert.Equal(t, wantKeys, storeObjects(t, store))
			})
		}
	}
}

// A chunk object overwritten or deleted in the store is found on read and
// named by its hash; the other chunks still read.
func TestBlobStoreCorruptChunk(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			store := kind.url(t)
			content := testContent(42, 10*ChunkSize)
			r := rand.New(rand.NewPCG(5, 5))
			for i := 5 * ChunkSize; i < 6*ChunkSize; i++ {
				content[i] = byte(r.Uint32()) // incompressible, unique
			}
			path := filepath.Join(t.TempDir(), "vm.vmb")
			writeTestBundle(t, path, testVM(Disk{ID: "sda", Device: "disk", Bus: "sata", Image: byteImage(content)}), BundleOptions{Store: store})
			key := chunkKey(content[5*ChunkSize : 6*ChunkSize])
			b := openTestBucket(t, store)
			orig, err := b.ReadAll(context.Background(), key)
			require.NoError(t, err)
			u, err := parseStoreURL(store)
			require.NoError(t, err)
			name := u.shown + key

			cases := []struct {
				name   string
				mutate func() error
				msg    string
			}{
				{"flipped byte", func() error {
					p := bytes.Clone(orig)
					p[len(p)/2] ^= 0x40
					return b.WriteAll(context.Background(), key, p, nil)
				}, "SHA-256"},
				{"other chunk", func() error {
					return b.WriteAll(context.Background(), key, compressTest(t, content[:ChunkSize]), nil)
				}, "SHA-256"},
				{"garbage", func() error {
					return b.WriteAll(context.Background(), key, bytes.Repeat([]byte{0xAA}, 5000), nil)
				}, "zstd"},
				{"oversized", func() error {
					return b.WriteAll(context.Background(), key, make([]byte, maxChunkFile+1), nil)
				}, "more than"},
				{"missing", func() error { return b.Delete(context.Background(), key) }, "chunk object is missing from the store"},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					require.NoError(t, tc.mutate())
					defer func() { require.NoError(t, b.WriteAll(context.Background(), key, orig, nil)) }()
					got, err := OpenBundle(path)
					require.NoError(t, err, "opening reads no chunk")
					defer got.Close()
					img := got.Disks[0].Image
					for _, buf := range [][]byte{make([]byte, ChunkSize), make([]byte, 512)} {
						_, err = img.ReadAt(buf, 5*ChunkSize)
						require.Error(t, err)
						for _, want := range []string{path, "disk sda", "chunk 5 (" + name + ")", tc.msg} {
							assert.Contains(t, err.Error(), want)
						}
					}
					_, err = img.ReadAt(make([]byte, ChunkSize), 4*ChunkSize)
					assert.NoError(t, err)
				})
			}
		})
	}
}

// A file:// store has a store directory's layout: either reads the other's
// chunks.
func TestFileStoreIsAStoreDirectory(t *testing.T) {
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	content := testContent(8, 12*ChunkSize)
	path := filepath.Join(dir, "vm.vmb")
	writeTestBundle(t, path, testVM(Disk{ID: "sda", Device: "disk", Bus: "sata", Image: byteImage(content)}), BundleOptions{Store: "file://" + storeDir})

	vm, err := OpenBundleStore(path, storeDir)
	require.NoError(t, err)
	defer vm.Close()
	_, eq, err := disk.Compare(context.Background(), vm.Disks[0].Image, byteImage(content), disk.CopyOptions{})
	require.NoError(t, err)
	assert.True(t, eq)
	// No side files beside the chunks.
	for name := range storeFiles(t, storeDir) {
		assert.Len(t, name, 64, name)
	}
}

func TestOpenBundleStoreOverride(t *testing.T) {
	dir := t.TempDir()
	content := testContent(9, 6*ChunkSize)
	path := filepath.Join(dir, "vm.vmb")
	first, moved := filepath.Join(dir, "first"), filepath.Join(dir, "moved")
	writeTestBundle(t, path, testVM(Disk{ID: "sda", Device: "disk", Bus: "sata", Image: byteImage(content)}), BundleOptions{Store: "file://" + first})
	require.NoError(t, os.Rename(first, moved))

	vm, err := OpenBundle(path)
	require.NoError(t, err)
	_, err = disk.Digest(context.Background(), vm.Disks[0].Image, disk.CopyOptions{})
	assert.ErrorContains(t, err, "file://"+first+"/")
	assert.ErrorContains(t, err, "missing")
	vm.Close()

	for _, store := range []string{"file://" + moved, moved} {
		vm, err := OpenBundleStore(path, store)
		require.NoError(t, err)
		d, err := disk.Digest(context.Background(), vm.Disks[0].Image, disk.CopyOptions{})
		assert.NoError(t, err, store)
		assert.Equal(t, vm.Disks[0].Digest, d)
		vm.Close()
	}
}

func TestStoreURLErrors(t *testing.T) {
	cases := []struct {
		url, msg string
	}{
		{"s3:///prefix", "no bucket name"},
		{"ftp://host/dir", `unknown scheme "ftp"`},
		{"s3://key:secret@bucket/p", "credentials"},
		{"s3://bucket?prefix=p/", "as the URL's path"},
		{"file://host/dir", "want file:///ABSOLUTE/DIR"},
		{"s3://bucket/p?region=x&bogus=1", "bogus"},
	}
	for _, tc := range cases {
		t.Run(tc.url, func(t *testing.T) {
			out := disk.NewOutput(false)
			defer out.Abort()
			vm := testVM(Disk{ID: "sda", Device: "disk", Bus: "sata", Image: byteImage(testContent(1, ChunkSize))})
			err := WriteBundle(context.Background(), out, filepath.Join(t.TempDir(), "vm.vmb"), vm, BundleOptions{Store: tc.url})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
			assert.Contains(t, err.Error(), "chunk store ")
			_, msg, _ := strings.Cut(err.Error(), "vm.vmb: ") // the path holds the test's name
			assert.NotContains(t, msg, "secret")
		})
	}
}

// A store that cannot be reached fails the write, naming the store and the
// chunk, and leaves no bundle.
func TestBlobStoreUnreachable(t *testing.T) {
	store := "s3://bucket/p?endpoint=" + url.QueryEscape("http://127.0.0.1:1") + "&region=us-east-1&use_path_style=true"
	path := filepath.Join(t.TempDir(), "vm.vmb")
	out := disk.NewOutput(false)
	content := testContent(2, 3*ChunkSize)
	content[0] = 1
	err := WriteBundle(context.Background(), out, path, testVM(Disk{ID: "sda", Device: "disk", Bus: "sata", Image: byteImage(content)}), BundleOptions{Store: store})
	out.Abort()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "chunk store "+store+": put chunk ")
	assert.True(t, strings.Contains(err.Error(), "connection refused"), err.Error())
	_, err = os.Stat(path)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// TestStoreThroughput measures writing the raw image VMCONV_BENCH_RAW (as
// TestBundleThroughput) into the chunk store VMCONV_BENCH_STORE names (dir,
// file or s3), and reading it back with verification, and reports the
// speeds and the peak RSS. One store per run, so the RSS is that store's.
func TestStoreThroughput(t *testing.T) {
	raw, kind := os.Getenv("VMCONV_BENCH_RAW"), os.Getenv("VMCONV_BENCH_STORE")
	if raw == "" || kind == "" {
		t.Skip("set VMCONV_BENCH_RAW and VMCONV_BENCH_STORE (dir, file or s3) to run")
	}
	stores := map[string]func(*testing.T) string{
		"dir":  func(t *testing.T) string { return filepath.Join(t.TempDir(), "store") },
		"file": fileStore, "s3": s3Store,
	}
	require.Contains(t, stores, kind)
	store := stores[kind](t)
	img, err := disk.OpenRaw(raw)
	require.NoError(t, err)
	defer img.Close()
	size := img.Size()
	vm := testVM(Disk{ID: "disk0", Device: "disk", Bus: "scsi", Image: img})
	path := filepath.Join(t.TempDir(), "vm.vmb")
	start, cpu0 := time.Now(), cpuTime()
	writeTestBundle(t, path, vm, BundleOptions{Store: store})
	el, cpu := time.Since(start), cpuTime()-cpu0
	t.Logf("%s write: %d MiB in %v (CPU %v): %.0f MB/s", kind, size>>20, el.Round(time.Millisecond), cpu.Round(time.Millisecond), float64(size)/el.Seconds()/1e6)

	got, err := OpenBundle(path)
	require.NoError(t, err)
	defer got.Close()
	start, cpu0 = time.Now(), cpuTime()
	d, err := disk.Digest(context.Background(), got.Disks[0].Image, disk.CopyOptions{})
	require.NoError(t, err)
	el, cpu = time.Since(start), cpuTime()-cpu0
	t.Logf("%s read+verify+digest: %v (CPU %v): %.0f MB/s", kind, el.Round(time.Millisecond), cpu.Round(time.Millisecond), float64(size)/el.Seconds()/1e6)
	require.Equal(t, vm.Disks[0].Digest, d)
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmHWM") {
			t.Log(kind, l)
		}
	}
}

// The endpoint may come from the AWS environment instead of the URL, so
// the bundle records no host.
func TestS3StoreEndpointFromEnvironment(t *testing.T) {
	withEndpoint := s3Store(t)
	u, err := url.Parse(withEndpoint)
	require.NoError(t, err)
	q := u.Query()
	t.Setenv("AWS_ENDPOINT_URL", q.Get("endpoint"))
	q.Del("endpoint")
	u.RawQuery = q.Encode()
	store := u.String()

	content := testContent(31, 5*ChunkSize)
	path := filepath.Join(t.TempDir(), "vm.vmb")
	writeTestBundle(t, path, testVM(Disk{ID: "sda", Device: "disk", Bus: "sata", Image: byteImage(content)}), BundleOptions{Store: store})
	assert.Equal(t, store, readList(t, filepath.Join(path, "disks", "sda.json")).Store)
	assert.NotContains(t, store, "127.0.0.1")
	checkContent(t, path, content)
	assert.NotEmpty(t, storeObjects(t, withEndpoint))
}

// A chunk the store has is never written again: a second writer with
// the same content leaves a (deliberately altered) object as it is, and a
// conditional put of an existing object is refused by the server.
func TestBlobStoreWritesOnce(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			store := kind.url(t)
			dir := t.TempDir()
			content := testContent(51, 6*ChunkSize)
			content[0] = 1
			write := func(name string) {
				writeTestBundle(t, filepath.Join(dir, name), testVM(Disk{ID: "sda", Device: "disk", Bus: "sata", Image: byteImage(content)}), BundleOptions{Store: store})
			}
			write("a.vmb")
			b := openTestBucket(t, store)
			key := chunkKey(content[:ChunkSize])
			marker := []byte("altered after the first write")
			require.NoError(t, b.WriteAll(context.Background(), key, marker, nil))
			write("b.vmb")
			got, err := b.ReadAll(context.Background(), key)
			require.NoError(t, err)
			assert.Equal(t, marker, got, "the second writer rewrote %s", key)

			err = b.WriteAll(context.Background(), key, []byte("x"), &blob.WriterOptions{IfNotExist: true})
			assert.Equal(t, gcerrors.FailedPrecondition, gcerrors.Code(err), "%v", err)
		})
	}
}
