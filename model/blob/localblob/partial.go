package localblob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/filegate/filegate/model/blob"
)

// A partial upload is partial/data/<name>, whose size is the upload's
// offset, plus partial/state/<name>, the SHA-256 running state over the
// first `offset` bytes of that file.
//
// Durability: an Append does not fsync. Its bytes are in the page cache
// when it returns, so they survive the death of the process (SIGKILL, a
// panic, an OOM kill), which is what a tus client resuming over a flaky
// link needs. A power cut may lose the tail that had not reached the disk
// yet; ext4 (data=ordered) and XFS only move a file's on-disk size past
// bytes that were written, so the file then simply ends earlier, its size
// is the upload's offset again, and the client resumes from there (its
// HEAD reports the file's size, never a number kept elsewhere). Writeback
// is started every 1 MiB as the bytes come (see pipe), so Publish's fsync
// finds little left to write. Publish fsyncs before it renames, so a
// published blob is durable before anyone records it. Fsyncing every
// chunk instead kept each PATCH waiting on the device while its client
// sat idle: a 1 GiB upload in 8 MiB PATCHes ran at half the disk's speed.
//
// The sidecar is not fsynced either. It is written after the bytes it
// covers reached the file, so after a crash of the process it lags the
// data; after a power cut it may lead it (the sidecar's blocks reached
// the disk, the data's did not), which loadState detects by its offset
// exceeding the file's size, and the whole file is rehashed. Either way a
// lagging tail is hashed from the file on the next Append or Publish.

// The hash state also stays in memory between calls (hashCache), so that
// an Append neither reads nor rewrites the sidecar: renaming a new sidecar
// into place on every chunk cost a journal operation per PATCH, which
// waited behind the chunk's own fsync. The sidecar is written by the first
// Append of a process on an upload and then after every stateEvery bytes,
// which bounds what a restart must rehash.

// stateEvery is how many appended bytes the sidecar may lag behind.
const stateEvery = 64 << 20

// maxIdlePartials bounds how many uploads nobody is working on keep their
// hash state in memory.
const maxIdlePartials = 1024

// partialLock serialises work on one upload id inside this process; flock
// on the data file does the same across processes.
type partialLock struct {
	mu      sync.Mutex
	refs    int        // guarded by Store.mu
	busy    bool       // guarded by Store.mu: an Append is changing the file
	settled int64      // guarded by Store.mu: the upload's size while busy
	hc      *hashCache // guarded by mu; kept while refs is 0 (see release)
}

// hashCache is the hash state over a data file as this process last left
// it. It is valid while the file is the same (inode), the same size and
// unchanged since (mtime): another process appending or truncating moves
// at least one of them.
type hashCache struct {
	ino   uint64
	size  int64
	mtime time.Time
	state []byte
	saved int64 // offset the sidecar holds
}

func (c *hashCache) valid(fi os.FileInfo) bool {
	return c != nil && c.ino == inode(fi) && c.size == fi.Size() && c.mtime.Equal(fi.ModTime())
}

func (s *Store) lockPartial(id string) (release func()) {
	s.mu.Lock()
	l := s.partials[id]
	if l == nil {
		l = &partialLock{}
		s.partials[id] = l
	}
	l.refs++
	s.mu.Unlock()
	l.mu.Lock()
	return func() {
		s.mu.Lock()
		l.busy = false
		l.refs--
		if l.refs == 0 && (l.hc == nil || len(s.partials) > maxIdlePartials) {
			delete(s.partials, id)
		}
		s.mu.Unlock()
		l.mu.Unlock()
	}
}

// partialLockOf returns the entry of id, which the caller holds.
func (s *Store) partialLockOf(id string) *partialLock {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.partials[id]
}

// setSettled publishes the size PartialSize reports while an Append runs:
// the bytes before the Append, then all of them once it has kept them.
func (s *Store) setSettled(id string, size int64) {
	s.mu.Lock()
	l := s.partials[id]
	l.busy, l.settled = true, size
	s.mu.Unlock()
}

func (s *Store) dataPath(id string) string {
	return filepath.Join(s.root, dirPData, fileName(id))
}

func (s *Store) statePath(id string) string {
	return filepath.Join(s.root, dirPState, fileName(id))
}

// openPartial opens and flocks the data file of id, creating it when asked.
// It returns blob.ErrNotFound.
func (s *Store) openPartial(id string, create bool) (*os.File, error) {
	path := s.dataPath(id)
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE
	}
	for {
		f, err := os.OpenFile(path, flags, 0o600)
		if err != nil {
			return nil, notFound(err, id)
		}
		if err := lockFile(int(f.Fd())); err != nil {
			f.Close()
			return nil, err
		}
		if sameFile(int(f.Fd()), path) {
			return f, nil
		}
		// Another process published or discarded it while we waited.
		f.Close()
	}
}

// Append streams r onto the end of partial upload id; see blob.Partials.
// Unlike that contract says, a chunk is not fsynced: it survives the death
// of the process but a power cut may take it back (see the top of this
// file). Calls for one id are serialised. It returns blob.ErrInvalidKey
// for a bad id, blob.ErrNotFound when offset is not 0 and id does not
// exist, blob.ErrOffset, blob.ErrNoSpace, accept's error, or the error of
// r or ctx together with the count of bytes kept.
func (s *Store) Append(ctx context.Context, id string, offset int64, r io.Reader, accept func(n int64) error) (int64, error) {
	if err := checkKey(id); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if offset < 0 {
		return 0, fmt.Errorf("%w: negative offset %d", blob.ErrOffset, offset)
	}
	release := s.lockPartial(id)
	defer release()
	f, err := s.openPartial(id, offset == 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	if offset != size {
		return 0, fmt.Errorf("%w: upload %q is at %d, not %d", blob.ErrOffset, id, size, offset)
	}
	pl := s.partialLockOf(id)
	h, saved, err := s.resumeHash(ctx, id, f, fi, pl.hc)
	if err != nil {
		return 0, err
	}
	pl.hc = nil // until this Append leaves the file in a known state
	s.setSettled(id, size)
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		return 0, err
	}
	p := newPipe(ctx, s, f, h, size)
	n, rerr := p.readFrom(r)
	if err := p.endWrites(); err != nil {
		p.abort()
		s.rollback(f, size)
		return 0, err
	}
	if rerr == nil && accept != nil {
		if err := accept(n); err != nil {
			p.abort()
			s.rollback(f, size)
			return 0, err
		}
	}
	// No fsync (see the top of this file): the chunk is kept once it is
	// in the file and hashed. Nor is a new data file's directory synced:
	// a power cut that loses the file only rolls the upload back to 0.
	if err := p.waitHash(); err != nil {
		s.rollback(f, size)
		return 0, err
	}
	s.setSettled(id, size+n)
	if n == 0 {
		pl.hc = &hashCache{ino: inode(fi), size: size, mtime: fi.ModTime(), saved: saved}
		pl.hc.state, _ = h.(encoding.BinaryMarshaler).MarshalBinary()
		return n, rerr
	}
	if size+n-saved >= stateEvery || saved == 0 {
		if err := s.saveState(id, fi, size+n, h); err != nil {
			// The bytes are kept; the next call rehashes the tail.
			slog.Warn("localblob: cannot save upload hash state", "id", id, "err", err)
		} else {
			saved = size + n
		}
	}
	if nfi, err := f.Stat(); err == nil && nfi.Size() == size+n {
		pl.hc = &hashCache{ino: inode(nfi), size: size + n, mtime: nfi.ModTime(), saved: saved}
		pl.hc.state, _ = h.(encoding.BinaryMarshaler).MarshalBinary()
	}
	return n, rerr
}

// rollback cuts an Append's bytes off again. Unlike an Append it fsyncs:
// writeback may already have put the refused bytes on the disk, and a
// power cut must not bring back a chunk that failed its checksum or its
// authorization.
func (s *Store) rollback(f *os.File, size int64) {
	err := f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		slog.Error("localblob: cannot roll back rejected chunk", "file", f.Name(), "err", err)
	}
}

// resumeHash returns a SHA-256 over the first fi.Size() bytes of f, starting
// from hc or else the sidecar when it is valid for this file and hashing
// the rest, and the offset the sidecar holds (0 when unknown).
func (s *Store) resumeHash(ctx context.Context, id string, f *os.File, fi os.FileInfo, hc *hashCache) (hash.Hash, int64, error) {
	size := fi.Size()
	h := sha256.New()
	if size > 0 && hc.valid(fi) {
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(hc.state); err == nil {
			return h, hc.saved, nil
		}
		h = sha256.New()
	}
	var from, saved int64
	if size > 0 {
		if off, state, ok := s.loadState(id, fi); ok {
			if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err == nil {
				from, saved = off, off
			} else {
				h = sha256.New()
			}
		}
	}
	if from < size {
		if _, err := copyCtx(ctx, h, io.NewSectionReader(f, from, size-from)); err != nil {
			return nil, 0, err
		}
	}
	return h, saved, nil
}

// Sidecar: magic, inode of the data file, offset, hash state, CRC-32 of
// everything before it.
var stateMagic = []byte("FGP1")

func (s *Store) loadState(id string, fi os.FileInfo) (int64, []byte, bool) {
	b, err := os.ReadFile(s.statePath(id))
	if err != nil || len(b) < len(stateMagic)+8+8+4 || !bytes.HasPrefix(b, stateMagic) {
		return 0, nil, false
	}
	body, tail := b[:len(b)-4], b[len(b)-4:]
	if crc32.ChecksumIEEE(body) != binary.BigEndian.Uint32(tail) {
		return 0, nil, false
	}
	body = body[len(stateMagic):]
	ino, off := binary.BigEndian.Uint64(body), int64(binary.BigEndian.Uint64(body[8:]))
	if ino != inode(fi) || off < 0 || off > fi.Size() {
		return 0, nil, false
	}
	return off, body[16:], true
}

func (s *Store) saveState(id string, fi os.FileInfo, off int64, h hash.Hash) error {
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return err
	}
	b := append([]byte(nil), stateMagic...)
	b = binary.BigEndian.AppendUint64(b, inode(fi))
	b = binary.BigEndian.AppendUint64(b, uint64(off))
	b = append(b, state...)
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	f, err := s.createTemp("s-")
	if err != nil {
		return err
	}
	defer s.releaseTemp(f.Name())
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.statePath(id))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// PartialSize returns the size of partial upload id, which is what its
// data file holds (after a power cut, what reached the disk); while an
// Append runs it returns the size before that Append. It returns
// blob.ErrInvalidKey and blob.ErrNotFound.
func (s *Store) PartialSize(ctx context.Context, id string) (int64, error) {
	if err := checkKey(id); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// Holding s.mu keeps an Append from starting between the check and
	// the stat, so we never report bytes an Append has not kept yet.
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.partials[id]; l != nil && l.busy {
		return l.settled, nil
	}
	fi, err := os.Stat(s.dataPath(id))
	if err != nil {
		return 0, notFound(err, id)
	}
	return fi.Size(), nil
}

// Publish turns partial upload id into the committed blob key with one
// rename, hashing only the tail its sidecar does not cover. It returns
// blob.ErrInvalidKey, blob.ErrNotFound and blob.ErrNoSpace.
func (s *Store) Publish(ctx context.Context, id, key string) (blob.Info, error) {
	if err := checkKey(id); err != nil {
		return blob.Info{}, err
	}
	if err := checkKey(key); err != nil {
		return blob.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, err
	}
	release := s.lockPartial(id)
	defer release()
	f, err := s.openPartial(id, false)
	if err != nil {
		return blob.Info{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return blob.Info{}, err
	}
	pl := s.partialLockOf(id)
	h, _, err := s.resumeHash(ctx, id, f, fi, pl.hc)
	if err != nil {
		return blob.Info{}, err
	}
	pl.hc = nil
	sum := hex.EncodeToString(h.Sum(nil))
	src := f.Name()
	// Appends left the bytes to writeback; this fsync makes them durable
	// before the rename, so a published blob never holds less than its
	// name promises (a tus upload whose instance dies after the rename is
	// recorded from the blob alone). The xattr is set first so that it
	// rides in the journal commit this fsync makes anyway for the file's
	// new size.
	if err := setSum(src, sum); err != nil && !errors.Is(err, errNoXattr) {
		return blob.Info{}, mapErr(err)
	}
	if err := f.Sync(); err != nil {
		return blob.Info{}, mapErr(err)
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, err
	}
	dst := s.objectPath(key)
	if err := os.Rename(src, dst); err != nil {
		return blob.Info{}, fmt.Errorf("localblob: publish %q as %q: %w", id, key, mapErr(err))
	}
	if err := os.Remove(s.statePath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		slog.Warn("localblob: cannot remove upload hash state", "id", id, "err", err)
	}
	// Only the new name's directory is synced. On a journaling
	// filesystem one rename is one journal operation, so this sync also
	// commits the old name's removal. Where it is not, a power cut may
	// bring the partial back beside its published blob: a leftover with
	// the same bytes, published again if the upload was not recorded yet.
	// Neither case is worth a device flush per upload.
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return blob.Info{}, mapErr(err)
	}
	return blob.Info{Size: fi.Size(), SHA256: sum, ModTime: fi.ModTime()}, nil
}

// Discard removes partial upload id; a missing one is not an error. It
// returns blob.ErrInvalidKey.
func (s *Store) Discard(ctx context.Context, id string) error {
	if err := checkKey(id); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	release := s.lockPartial(id)
	defer release()
	s.partialLockOf(id).hc = nil
	// Sidecar first: a sidecar without data is ignored, data without a
	// sidecar is rehashed.
	for _, p := range []string{s.statePath(id), s.dataPath(id)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
