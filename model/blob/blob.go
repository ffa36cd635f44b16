// Package blob defines where filegate keeps file bytes. A Store is a flat
// key space of immutable blobs: a blob is written once through a Writer and
// becomes visible under its key only when the Writer commits, so a reader
// never sees a partial blob. Resumable uploads (tus) grow a partial blob by
// appending chunks and publish it under a key when it is complete.
//
// Implementations live in subpackages (localblob, and s3blob for
// S3-compatible stores); blobtest holds the conformance suite every
// implementation must pass. The package knows nothing of metadata, HTTP or
// any protocol.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Errors returned by every Store implementation.
var (
	// ErrNotFound means no committed blob (or partial upload) has that key.
	ErrNotFound = errors.New("blob: not found")
	// ErrNoSpace means the backing storage is full.
	ErrNoSpace = errors.New("blob: no space left")
	// ErrOffset means an append did not start at the partial blob's size.
	ErrOffset = errors.New("blob: offset mismatch")
	// ErrUnavailable means the backing storage cannot be reached right now.
	ErrUnavailable = errors.New("blob: storage unavailable")
	// ErrInvalidKey means a key breaks the syntax CheckKey enforces.
	ErrInvalidKey = errors.New("blob: invalid key")
	// ErrSize means a blob opened with SizedOpener holds another number
	// of bytes than its caller recorded.
	ErrSize = errors.New("blob: size differs from the recorded one")
)

// Info describes a committed blob.
type Info struct {
	Size    int64
	SHA256  string // lowercase hex
	ModTime time.Time
}

// Store keeps blob bytes. Keys are chosen by the caller and never reused for
// different content; a key that is committed twice is an error in the caller.
type Store interface {
	// Create starts a new blob that becomes visible under key only when the
	// returned Writer's Commit succeeds. It returns ErrInvalidKey.
	Create(ctx context.Context, key string) (Writer, error)
	// Open returns a reader over the committed blob. It returns ErrNotFound.
	Open(ctx context.Context, key string) (Reader, error)
	// Stat describes the committed blob. It returns ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes a committed blob. Deleting a missing key is not an
	// error, so that retries after a crash are safe.
	Delete(ctx context.Context, key string) error
	// Copy makes dst a copy of the committed blob src, server side where
	// the backend can. It returns ErrNotFound.
	Copy(ctx context.Context, src, dst string) (Info, error)
	// Walk calls fn for every committed blob, in no particular order, so
	// that a sweep can find blobs no metadata row refers to.
	Walk(ctx context.Context, fn func(key string, info Info) error) error
	// Sweep removes the leftovers of writers that never committed or
	// aborted (a crashed process, a killed request) whose last write is
	// older than before. It never touches committed blobs or live partial
	// uploads. It returns how many leftovers it removed.
	Sweep(ctx context.Context, before time.Time) (int, error)

	Partials
}

// Partials is the resumable half of a Store: a partial blob grows by
// appended chunks and is published under a key in one step when complete.
// A chunk is kept once Append returns: it survives the process, and any
// instance may continue. How it fares in a power cut is each store's
// choice, as long as the size reported afterwards is what the store really
// holds: S3 holds every acknowledged chunk; the local folder leaves chunks
// to the page cache, so a power cut may take the offset back to what had
// reached the disk, and clients resume from there. Publish always makes
// the whole blob durable before it becomes visible.
type Partials interface {
	// Append writes the chunk read from r at offset to the partial blob id,
	// creating it when offset is 0 and it does not exist. The chunk is
	// streamed, never held whole in memory. When accept is not nil it is
	// called after the chunk has been read in full and before it is kept,
	// with the chunk's length; if accept returns an error the
	// chunk is discarded, the partial blob keeps its old size, and that
	// error is returned. If r fails midway the bytes read so far are kept
	// (a flaky link resumes from there) and the read error
	// is returned with the count. It returns ErrOffset when offset differs
	// from the partial blob's current size, and ErrNoSpace.
	Append(ctx context.Context, id string, offset int64, r io.Reader, accept func(n int64) error) (int64, error)
	// PartialSize returns the size of the partial blob id: what a resumed
	// upload continues from. It returns ErrNotFound.
	PartialSize(ctx context.Context, id string) (int64, error)
	// Publish turns the partial blob id into the committed blob key in one
	// step and returns its Info, including the SHA-256 over all chunks. It
	// returns ErrNotFound.
	Publish(ctx context.Context, id, key string) (Info, error)
	// Discard removes the partial blob id; a missing one is not an error.
	Discard(ctx context.Context, id string) error
}

// SizedOpener is implemented by stores where learning a blob's size is a
// request of its own (S3's HEAD). OpenSized trusts the size the caller
// recorded when the blob was written and sends nothing until the first
// read, so a download reads the object with one request instead of two,
// and an answer that needs no bytes (a HEAD, a 304) needs no request at
// all. The price is that a missing blob, or one of another size, is
// reported by the first read instead of by the open: that read returns
// ErrNotFound or ErrSize. Stores whose Open is cheap (a local file) do
// not implement it.
type SizedOpener interface {
	OpenSized(ctx context.Context, key string, size int64) (Reader, error)
}

// Writer streams a new blob. Exactly one of Commit or Abort ends it; Abort
// after Commit does nothing, so `defer w.Abort()` is the usual pattern.
type Writer interface {
	io.Writer
	// Commit makes the bytes durable and the blob visible under its key,
	// and returns its size and SHA-256. It returns ErrNoSpace.
	Commit(ctx context.Context) (Info, error)
	// Abort discards everything written.
	Abort() error
}

// Reader reads a committed blob. Seek and ReadAt allow ranged reads without
// reading what comes before.
type Reader interface {
	io.ReadSeekCloser
	io.ReaderAt
	// Size is the blob's length in bytes.
	Size() int64
}

// MaxKeyLen is the longest key a store accepts: every store keeps a key as
// one file or object name segment.
const MaxKeyLen = 255

// CheckKey enforces the key syntax every store shares, so a key valid on
// the local folder is valid on S3 and back: non-empty, at most MaxKeyLen
// bytes of [A-Za-z0-9._/-], no leading or trailing "/", and no empty, "."
// or ".." element. It returns an error wrapping ErrInvalidKey.
func CheckKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: length %d", ErrInvalidKey, len(key))
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '-' || c == '/'
		if !ok {
			return fmt.Errorf("%w: %q", ErrInvalidKey, key)
		}
	}
	for _, el := range strings.Split(key, "/") {
		if el == "" || el == "." || el == ".." {
			return fmt.Errorf("%w: %q", ErrInvalidKey, key)
		}
	}
	return nil
}
