// Package localblob keeps blobs in a folder on the local filesystem.
//
// Layout under the root folder (all on one filesystem, so rename is atomic):
//
//	objects/<fan>/<name>   committed blobs, immutable once renamed in
//	tmp/<random>           files of writers in flight, and crash leftovers
//	partial/data/<name>    bytes of resumable uploads
//	partial/state/<name>   SHA-256 running state of each resumable upload
//
// <name> is the key with every "/" replaced by "+" (a character keys cannot
// hold), so a key is always a single file name and "a" and "a/b" can both
// exist. <fan> is the first byte of SHA-256(key) in hex, so that sequential
// keys still spread over 256 directories. The SHA-256 of a committed blob is
// kept in the extended attribute user.filegate.sha256; on a filesystem
// without user xattrs it is recomputed from the bytes when asked for.
package localblob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/filegate/filegate/model/blob"
)

// MaxKeyLen is the longest key (and partial upload id) the store accepts:
// a key is stored as one file name, and Linux file names stop at 255 bytes.
const MaxKeyLen = blob.MaxKeyLen

const (
	dirObjects = "objects"
	dirTmp     = "tmp"
	dirPData   = "partial/data"
	dirPState  = "partial/state"
)

// Store is a blob.Store on a local folder. It is safe for concurrent use.
type Store struct {
	root string
	bufs sync.Pool // *[]byte of bufSize, shared by all pipelines
	// direct is set where large blobs are written with O_DIRECT (asked
	// for in Options and allowed by the filesystem; see direct.go); dbufs
	// holds its aligned buffers.
	direct       bool
	dbufs        sync.Pool
	directWrites atomic.Int64 // for tests
	// renameInFileSync is set on filesystems where a file's fsync also
	// commits its earlier rename, which spares small writes a directory
	// fsync (see fsyncCommitsRename).
	renameInFileSync bool

	mu       sync.Mutex
	live     map[string]struct{}     // tmp/ names of this process's writers in flight
	partials map[string]*partialLock // per upload id, while someone holds or waits for it
}

var _ blob.Store = (*Store)(nil)

// Options tunes a Store. The zero value is what New uses.
type Options struct {
	// DirectIO writes large blobs with O_DIRECT past their first 256 KiB,
	// hashing them from the same buffers, so that their bytes are never
	// copied into the page cache. It costs less CPU where filling the page
	// cache is dear (on the benchmark VM, 1.7-2.4 CPU-seconds per GiB
	// instead of 2-5) and keeps uploads from pushing hot files out of the
	// cache, but a file just written is then read from the device by its
	// first GET (on the benchmark VM 0.5-1.6 GB/s instead of 2 GB/s from
	// the cache). Where the filesystem refuses O_DIRECT (probed when the
	// store opens) it has no effect; see Store.DirectIO.
	DirectIO bool
}

// New opens the store rooted at root with the default Options, creating
// the folder layout when it is missing. It returns an error when root
// cannot be created or written.
func New(root string) (*Store, error) { return Open(root, Options{}) }

// Open opens the store rooted at root with o, creating the folder layout
// when it is missing. It returns an error when root cannot be created or
// written; a DirectIO the filesystem refuses is not an error.
func Open(root string, o Options) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("localblob: root %q: %w", root, err)
	}
	dirs := []string{dirTmp, dirPData, dirPState}
	for i := 0; i < 256; i++ {
		dirs = append(dirs, filepath.Join(dirObjects, fmt.Sprintf("%02x", i)))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o700); err != nil {
			return nil, fmt.Errorf("localblob: create layout: %w", mapErr(err))
		}
	}
	s := &Store{
		root:             abs,
		renameInFileSync: fsyncCommitsRename(abs),
		live:             make(map[string]struct{}),
		partials:         make(map[string]*partialLock),
	}
	s.bufs.New = func() any { b := make([]byte, bufSize); return &b }
	s.dbufs.New = func() any { return newDirectBuf() }
	s.direct = o.DirectIO && directSupported(filepath.Join(abs, dirTmp))
	return s, nil
}

// DirectIO reports whether large blobs are written with O_DIRECT: they are
// when Options asked for it and the filesystem allows it.
func (s *Store) DirectIO() bool { return s.direct }

// Root returns the absolute folder the store lives in.
func (s *Store) Root() string { return s.root }

// checkKey is the key syntax every blob store shares.
func checkKey(key string) error { return blob.CheckKey(key) }

// fileName turns a valid key into a single file name; keyOf reverses it.
func fileName(key string) string { return strings.ReplaceAll(key, "/", "+") }
func keyOf(name string) string   { return strings.ReplaceAll(name, "+", "/") }

func fanOut(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:1])
}

func (s *Store) objectPath(key string) string {
	return filepath.Join(s.root, dirObjects, fanOut(key), fileName(key))
}

// mapErr wraps out-of-space errors so that errors.Is(err, blob.ErrNoSpace)
// holds, keeping the original error for the log.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", blob.ErrNoSpace, err)
	}
	return err
}

// notFound maps a missing file to blob.ErrNotFound.
func notFound(err error, key string) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %q", blob.ErrNotFound, key)
	}
	return mapErr(err)
}

// syncDir makes renames and removals inside dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Create starts a new blob written to a file under tmp/. The returned
// Writer is not safe for concurrent use; ctx bounds its writes as well (a
// cancelled ctx fails the next Write). It returns blob.ErrInvalidKey and
// blob.ErrNoSpace.
func (s *Store) Create(ctx context.Context, key string) (blob.Writer, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := s.createTemp("w-")
	if err != nil {
		return nil, err
	}
	return newWriter(ctx, s, key, f), nil
}

// createTemp creates a file in tmp/ that Sweep leaves alone until
// releaseTemp is called for it.
func (s *Store) createTemp(prefix string) (*os.File, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, dirTmp), prefix+"*")
	if err != nil {
		return nil, mapErr(err)
	}
	s.mu.Lock()
	s.live[filepath.Base(f.Name())] = struct{}{}
	s.mu.Unlock()
	return f, nil
}

func (s *Store) releaseTemp(path string) {
	s.mu.Lock()
	delete(s.live, filepath.Base(path))
	s.mu.Unlock()
}

// Open returns a reader over the committed blob; it stays readable even if
// the blob is deleted while open. It returns blob.ErrInvalidKey and
// blob.ErrNotFound.
func (s *Store) Open(ctx context.Context, key string) (blob.Reader, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.objectPath(key))
	if err != nil {
		return nil, notFound(err, key)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &reader{f: f, size: fi.Size()}, nil
}

// reader is a committed blob file; committed blobs never change, so the
// size taken at open stays true. It exposes only reading, plus
// SyscallConn and WriteTo so that net/http can send it with sendfile.
type reader struct {
	f    *os.File
	size int64
}

func (r *reader) Read(p []byte) (int, error)                { return r.f.Read(p) }
func (r *reader) ReadAt(p []byte, off int64) (int, error)   { return r.f.ReadAt(p, off) }
func (r *reader) Seek(off int64, whence int) (int64, error) { return r.f.Seek(off, whence) }
func (r *reader) Close() error                              { return r.f.Close() }
func (r *reader) Size() int64                               { return r.size }
func (r *reader) WriteTo(w io.Writer) (int64, error)        { return r.f.WriteTo(w) }

func (r *reader) SyscallConn() (syscall.RawConn, error) { return r.f.SyscallConn() }

// Stat describes the committed blob. It returns blob.ErrInvalidKey and
// blob.ErrNotFound.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := checkKey(key); err != nil {
		return blob.Info{}, err
	}
	return s.statPath(ctx, s.objectPath(key), key)
}

func (s *Store) statPath(ctx context.Context, path, key string) (blob.Info, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return blob.Info{}, notFound(err, key)
	}
	sum, err := s.sumOf(ctx, path)
	if err != nil {
		return blob.Info{}, notFound(err, key)
	}
	return blob.Info{Size: fi.Size(), SHA256: sum, ModTime: fi.ModTime()}, nil
}

// sumOf reads the SHA-256 a committer stored on the file, or computes it
// (and tries to store it) when the filesystem lost or never had it.
func (s *Store) sumOf(ctx context.Context, path string) (string, error) {
	if sum, ok := getSum(path); ok {
		return sum, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := copyCtx(ctx, h, f); err != nil {
		return "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	_ = setSum(path, sum) // a cache only; the bytes stay the truth
	return sum, nil
}

// copyCtx copies src to dst, checking ctx between buffers.
func copyCtx(ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, err := src.Read(buf)
		if k > 0 {
			w, werr := dst.Write(buf[:k])
			n += int64(w)
			if werr != nil {
				return n, werr
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// Delete removes the committed blob; readers that have it open keep
// reading. A missing key is not an error. It returns blob.ErrInvalidKey.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := s.objectPath(key)
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return syncDir(filepath.Dir(p))
}

// Copy makes dst a copy of src. Committed blobs never change, so it hard
// links the two names to one inode where the filesystem allows and streams
// a copy otherwise. It returns blob.ErrInvalidKey, blob.ErrNotFound and
// blob.ErrNoSpace.
func (s *Store) Copy(ctx context.Context, src, dst string) (blob.Info, error) {
	if err := checkKey(src); err != nil {
		return blob.Info{}, err
	}
	if err := checkKey(dst); err != nil {
		return blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, err
	}
	sp, dp := s.objectPath(src), s.objectPath(dst)
	if src == dst {
		return s.statPath(ctx, sp, src)
	}
	err := os.Link(sp, dp)
	if errors.Is(err, fs.ErrExist) {
		err = s.linkOver(sp, dp)
	}
	switch {
	case err == nil:
		if err := syncDir(filepath.Dir(dp)); err != nil {
			return blob.Info{}, err
		}
		return s.statPath(ctx, dp, dst)
	case errors.Is(err, fs.ErrNotExist):
		return blob.Info{}, fmt.Errorf("%w: %q", blob.ErrNotFound, src)
	}
	slog.Debug("localblob: hard link failed, copying bytes", "err", err)
	return s.streamCopy(ctx, src, dst)
}

// linkOver replaces an existing dst by a hard link to src in one rename.
func (s *Store) linkOver(sp, dp string) error {
	f, err := s.createTemp("l-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	f.Close()
	defer s.releaseTemp(tmp)
	defer os.Remove(tmp) // still there if dst already was a link to src
	if err := os.Remove(tmp); err != nil {
		return err
	}
	if err := os.Link(sp, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, dp)
}

func (s *Store) streamCopy(ctx context.Context, src, dst string) (blob.Info, error) {
	r, err := s.Open(ctx, src)
	if err != nil {
		return blob.Info{}, err
	}
	defer r.Close()
	w, err := s.Create(ctx, dst)
	if err != nil {
		return blob.Info{}, err
	}
	defer w.Abort()
	if _, err := io.Copy(w, r); err != nil {
		return blob.Info{}, err
	}
	return w.Commit(ctx)
}

// Walk calls fn for every committed blob; blobs committed or deleted while
// it runs may or may not be visited. It stops at and returns the first
// error from fn or ctx.
func (s *Store) Walk(ctx context.Context, fn func(key string, info blob.Info) error) error {
	objects := filepath.Join(s.root, dirObjects)
	fans, err := os.ReadDir(objects)
	if err != nil {
		return err
	}
	for _, fan := range fans {
		if !fan.IsDir() {
			continue
		}
		dir := filepath.Join(objects, fan.Name())
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !e.Type().IsRegular() {
				continue
			}
			key := keyOf(e.Name())
			info, err := s.statPath(ctx, filepath.Join(dir, e.Name()), key)
			if errors.Is(err, blob.ErrNotFound) {
				continue // deleted since ReadDir
			}
			if err != nil {
				return err
			}
			if err := fn(key, info); err != nil {
				return err
			}
		}
	}
	return nil
}

// Sweep removes files under tmp/ last modified before the cutoff: what
// writers left behind when their process died. A writer's file is touched
// by each Write, so callers protect live writers of other processes by
// passing a cutoff older than the longest pause a writer may take between
// writes (an hour is generous); writers of this process are never swept.
// Partial uploads are not touched: they expire through Discard. It returns
// how many files it removed.
func (s *Store) Sweep(ctx context.Context, before time.Time) (int, error) {
	dir := filepath.Join(s.root, dirTmp)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		s.mu.Lock()
		_, live := s.live[e.Name()]
		s.mu.Unlock()
		if live {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.ModTime().Before(before) {
			continue // gone already, or possibly still being written
		}
		p := filepath.Join(dir, e.Name())
		if fi.IsDir() {
			err = os.RemoveAll(p)
		} else {
			err = os.Remove(p)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, err
		}
		if err == nil {
			n++
		}
	}
	return n, nil
}
