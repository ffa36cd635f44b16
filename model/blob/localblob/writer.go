package localblob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/filegate/filegate/model/blob"
)

// errEnded is returned by a Writer used after Commit or Abort.
var errEnded = errors.New("localblob: writer already committed or aborted")

// writer streams a blob into a temp file through a pipe that hashes as it
// writes; Commit renames the file into objects/.
type writer struct {
	s     *Store
	key   string
	f     *os.File
	p     *pipe
	ended bool
	err   error // sticky: the first failed Write
}

func newWriter(ctx context.Context, s *Store, key string, f *os.File) *writer {
	return &writer{s: s, key: key, f: f, p: newPipe(ctx, s, f, sha256.New(), 0)}
}

// Write copies b into the file. It fails once the Create ctx is done, and
// returns blob.ErrNoSpace.
func (w *writer) Write(b []byte) (int, error) {
	if w.ended {
		return 0, errEnded
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.p.write(b)
	w.err = err
	return n, err
}

// ReadFrom lets io.Copy read straight into the pipe's buffer.
func (w *writer) ReadFrom(r io.Reader) (int64, error) {
	if w.ended {
		return 0, errEnded
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.p.readFrom(r)
	if err == nil {
		err = w.p.writeErr()
	}
	w.err = err
	return n, err
}

// largeBlob is the size from which Commit fsyncs before it renames.
const largeBlob = 1 << 20

// errNoRenameFlags means the filesystem cannot rename without replacing.
var errNoRenameFlags = errors.New("localblob: renameat2 flags unsupported")

// Commit makes the blob durable under its key. On failure the temp file
// (or the half-published blob) is removed and the writer ended. It returns
// blob.ErrNoSpace, or the error of a failed Write or of ctx.
//
// A small blob under a fresh key (the usual case: keys are new ids) is
// renamed into place before the fsync, so that one journal commit makes the bytes, the xattr
// holding the SHA-256 and the directory entry durable together. On ext4
// and XFS that fsync is all it takes; elsewhere a directory fsync follows
// (it finds nothing left to write on a journaling filesystem, but may
// still flush the device). That halves the journal commits of small
// writes and, on ext4, their fsync calls. Nothing refers to the key until
// Commit returns, so a crash before the fsync leaves at worst an orphan
// for the sweep. A key that already exists is never replaced by bytes
// that are not yet durable: then the file is fsynced first and renamed
// over it after.
func (w *writer) Commit(ctx context.Context) (info blob.Info, err error) {
	if w.ended {
		return blob.Info{}, errEnded
	}
	w.ended = true
	tmp := w.f.Name()
	published := ""
	defer func() {
		if err != nil {
			w.p.abort()
			w.f.Close()
			os.Remove(tmp)
			if published != "" {
				os.Remove(published)
			}
		}
		w.s.releaseTemp(tmp)
	}()
	if w.err != nil {
		return blob.Info{}, w.err
	}
	if err := w.p.endWrites(); err != nil {
		return blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, err
	}
	fi, err := w.f.Stat()
	if err != nil {
		return blob.Info{}, err
	}
	// A large blob is fsynced while the hasher catches up, before the
	// rename: its journal commits are nothing next to its bytes, and the
	// overlap is worth more.
	synced := false
	if fi.Size() >= largeBlob {
		serr := w.f.Sync()
		herr := w.p.waitHash()
		if serr != nil {
			return blob.Info{}, mapErr(serr)
		}
		if herr != nil {
			return blob.Info{}, herr
		}
		synced = true
	} else if err := w.p.waitHash(); err != nil {
		return blob.Info{}, err
	}
	sum := hex.EncodeToString(w.p.h.Sum(nil))
	if err := setSum(tmp, sum); err != nil && !errors.Is(err, errNoXattr) {
		return blob.Info{}, mapErr(err)
	}
	dst := w.s.objectPath(w.key)
	rerr := errNoRenameFlags
	if !synced {
		rerr = renameNoReplace(tmp, dst)
	}
	switch {
	case rerr == nil:
		published = dst
		if err := w.f.Sync(); err != nil {
			return blob.Info{}, mapErr(err)
		}
		published = ""
		if err := w.f.Close(); err != nil {
			return blob.Info{}, mapErr(err)
		}
	case errors.Is(rerr, os.ErrExist) || errors.Is(rerr, errNoRenameFlags):
		if !synced {
			if err := w.f.Sync(); err != nil {
				return blob.Info{}, mapErr(err)
			}
		}
		if err := w.f.Close(); err != nil {
			return blob.Info{}, mapErr(err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			return blob.Info{}, fmt.Errorf("localblob: commit %q: %w", w.key, mapErr(err))
		}
	default:
		return blob.Info{}, fmt.Errorf("localblob: commit %q: %w", w.key, mapErr(rerr))
	}
	if rerr == nil && w.s.renameInFileSync {
		// The fsync above came after the rename and committed it.
		return blob.Info{Size: fi.Size(), SHA256: sum, ModTime: fi.ModTime()}, nil
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		// The blob is in place; only its durability across a power cut
		// is in doubt, and the caller cannot undo a rename anyway.
		return blob.Info{}, mapErr(err)
	}
	return blob.Info{Size: fi.Size(), SHA256: sum, ModTime: fi.ModTime()}, nil
}

// Abort discards the temp file; after Commit or Abort it does nothing.
func (w *writer) Abort() error {
	if w.ended {
		return nil
	}
	w.ended = true
	tmp := w.f.Name()
	defer w.s.releaseTemp(tmp)
	w.p.abort()
	w.f.Close()
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
