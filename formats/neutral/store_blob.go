package neutral

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/s3blob"
	"gocloud.dev/gcerrors"
)

// A blob store keeps chunks as objects of a bucket, named as in a store
// directory (<2 hex>/<64 hex>) under the URL's prefix:
//
//	s3://BUCKET[/PREFIX][?endpoint=URL&region=R&use_path_style=true…]
//	file:///DIR[?…]
//
// s3:// takes gocloud's s3blob parameters (endpoint, region, use_path_style
// or s3ForcePathStyle, disable_https, anonymous, profile, …); credentials
// come from the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_PROFILE, AWS_ENDPOINT_URL, …), never from the URL, since the URL is
// recorded in the bundle. file:// is fileblob with the layout of a store
// directory: no attribute side files, temporary files beside their target.
//
// A chunk is put with If-None-Match: * after an existence check, so one
// present is never rewritten. Two writers racing on one chunk is harmless:
// both hold the same bytes under a name that is their hash, so whichever put
// lands, the object is right (a server without conditional puts simply
// stores it twice).

// maxUploads bounds a blob store writer's uploads in flight, and so the
// payload memory they hold (one compressed chunk each).
const maxUploads = 16

// chunkTimeout bounds one chunk's requests, so a server that stops
// answering fails the run, naming the chunk, instead of hanging it.
const chunkTimeout = 2 * time.Minute

// isStoreURL reports whether store names a blob store (scheme://…) rather
// than a directory.
func isStoreURL(store string) bool { return strings.Contains(store, "://") }

// storeURL is a parsed blob store URL.
type storeURL struct {
	raw    string   // as given, recorded in chunk lists
	opener *url.URL // what the driver's opener gets
	prefix string   // key prefix inside the bucket, "" or ending in "/"
	shown  string   // scheme://bucket/prefix, for messages
}

func parseStoreURL(raw string) (*storeURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("chunk store %s: %w", raw, err)
	}
	if u.User != nil {
		return nil, fmt.Errorf("chunk store %s: the URL is recorded in bundles; give credentials through the environment (AWS_ACCESS_KEY_ID, …), not the URL", redact(u))
	}
	q := u.Query()
	if q.Has("prefix") || q.Has("key") {
		return nil, fmt.Errorf("chunk store %s: give the prefix as the URL's path, not as a parameter", raw)
	}
	s := &storeURL{raw: raw}
	o := *u
	switch u.Scheme {
	case s3blob.Scheme:
		if u.Host == "" {
			return nil, fmt.Errorf("chunk store %s: no bucket name (want s3://BUCKET/PREFIX)", raw)
		}
		if p := strings.Trim(u.Path, "/"); p != "" {
			s.prefix = p + "/"
		}
		o.Path, o.RawPath = "", ""
		s.shown = "s3://" + u.Host + "/" + s.prefix
	case fileblob.Scheme:
		if u.Path == "" || u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("chunk store %s: want file:///ABSOLUTE/DIR", raw)
		}
		// The layout of a store directory, created when missing.
		for k, v := range map[string]string{"metadata": "skip", "no_tmp_dir": "true", "create_dir": "true"} {
			if !q.Has(k) {
				q.Set(k, v)
			}
		}
		o.RawQuery = q.Encode()
		s.shown = "file://" + path.Clean(u.Path) + "/"
	default:
		return nil, fmt.Errorf("chunk store %s: unknown scheme %q (want s3:// or file://, or a directory)", raw, u.Scheme)
	}
	s.opener = &o
	return s, nil
}

func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

func (s *storeURL) key(sum *[32]byte) string {
	h := hex.EncodeToString(sum[:])
	return s.prefix + h[:2] + "/" + h
}

// name is a chunk's object for messages: the store and the chunk's hash.
func (s *storeURL) name(sum *[32]byte) string {
	h := hex.EncodeToString(sum[:])
	return s.shown + h[:2] + "/" + h
}

func (s *storeURL) open(ctx context.Context) (*blob.Bucket, error) {
	var (
		b   *blob.Bucket
		err error
	)
	switch s.opener.Scheme {
	case s3blob.Scheme:
		b, err = (&s3blob.URLOpener{}).OpenBucketURL(ctx, s.opener)
	default:
		b, err = (&fileblob.URLOpener{}).OpenBucketURL(ctx, s.opener)
	}
	if err != nil {
		return nil, fmt.Errorf("chunk store %s: %w", s.raw, err)
	}
	return b, nil
}

// blobStore writes chunks into a bucket: put hands each chunk new to this
// writer to one of up to maxUploads goroutines, which checks the store and
// uploads it; flush waits for them.
type blobStore struct {
	ctx    context.Context
	url    *storeURL
	bucket *blob.Bucket
	slots  chan struct{} // one per upload in flight
	bufs   sync.Pool     // *[]byte payload copies
	wg     sync.WaitGroup

	mu      sync.Mutex
	present map[[32]byte]bool
	err     error // the first failed upload

	written, reused int64
	writtenBytes    int64
}

func newBlobStore(ctx context.Context, raw string) (*blobStore, error) {
	u, err := parseStoreURL(raw)
	if err != nil {
		return nil, err
	}
	b, err := u.open(ctx)
	if err != nil {
		return nil, err
	}
	return &blobStore{ctx: ctx, url: u, bucket: b, slots: make(chan struct{}, maxUploads), present: map[[32]byte]bool{}}, nil
}

// has answers from what this writer has seen only: asking the store would
// put a round trip on the copy engine's workers for every chunk. put asks.
func (s *blobStore) has(sum *[32]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.present[*sum]
}

func (s *blobStore) noteReused() {
	s.mu.Lock()
	s.reused++
	s.mu.Unlock()
}

// put starts the upload of a chunk and returns; payload is copied. It waits
// while maxUploads are in flight, and returns the first failed upload's
// error once there is one.
func (s *blobStore) put(sum *[32]byte, payload []byte) error {
	s.mu.Lock()
	ok, err := s.present[*sum], s.err
	if err == nil && !ok {
		s.present[*sum] = true // a second put of it in this run waits on nothing
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if ok {
		s.noteReused()
		return nil
	}
	select {
	case s.slots <- struct{}{}:
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, maxChunkFile)
		bp = &b
	}
	*bp = append((*bp)[:0], payload...)
	s.wg.Add(1)
	go func() {
		defer func() { s.bufs.Put(bp); <-s.slots; s.wg.Done() }()
		s.upload(sum, *bp)
	}()
	return nil
}

// upload stores a chunk unless the store has it: a HEAD first, which
// saves sending what another bundle stored, then a put that only creates.
func (s *blobStore) upload(sum *[32]byte, payload []byte) {
	key := s.url.key(sum)
	ctx, cancel := context.WithTimeout(s.ctx, chunkTimeout)
	defer cancel()
	exists, err := s.bucket.Exists(ctx, key)
	if err == nil && !exists {
		err = s.bucket.WriteAll(ctx, key, payload, &blob.WriterOptions{
			ContentType: "application/zstd",
			IfNotExist:  true,
		})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil && exists:
		s.reused++
	case err == nil:
		s.written++
		s.writtenBytes += int64(len(payload))
	case gcerrors.Code(err) == gcerrors.FailedPrecondition:
		s.reused++ // another writer stored it meanwhile: same name, same bytes
	case s.err == nil:
		s.err = fmt.Errorf("chunk store %s: put chunk %x: %w", s.url.raw, sum[:], err)
	}
}

// flush waits for the uploads in flight and reports the first failure.
func (s *blobStore) flush() error {
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *blobStore) close() error {
	err := s.flush()
	if cerr := s.bucket.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("chunk store %s: %w", s.url.raw, cerr)
	}
	return err
}

// blobSource reads chunks from a bucket for one open disk.
type blobSource struct {
	url    *storeURL
	bucket *blob.Bucket
}

func openBlobSource(raw string) (*blobSource, error) {
	u, err := parseStoreURL(raw)
	if err != nil {
		return nil, err
	}
	b, err := u.open(context.Background())
	if err != nil {
		return nil, err
	}
	return &blobSource{url: u, bucket: b}, nil
}

func (s *blobSource) name(sum *[32]byte) string { return s.url.name(sum) }
func (s *blobSource) release() error            { return s.bucket.Close() }

func (s *blobSource) fetch(sum *[32]byte, buf []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), chunkTimeout)
	defer cancel()
	r, err := s.bucket.NewReader(ctx, s.url.key(sum), nil)
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return nil, errors.New("chunk object is missing from the store")
		}
		return nil, err
	}
	defer r.Close()
	if r.Size() > maxChunkFile {
		return nil, fmt.Errorf("%w: chunk object has %d bytes, more than %d", errChunkCorrupt, r.Size(), maxChunkFile)
	}
	n, err := io.ReadFull(r, buf[:maxChunkFile])
	switch {
	case err == nil:
		return nil, fmt.Errorf("%w: chunk object is larger than %d bytes", errChunkCorrupt, maxChunkFile)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return buf[:n], nil
	}
	return nil, err
}
