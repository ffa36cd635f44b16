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
// first `offset` bytes of that file. Bytes are fsynced before the sidecar
// is written, so after a crash the sidecar may lag the data but never lead
// it; the lagging tail is hashed from the file on the next Append or
// Publish. The sidecar is not fsynced: losing it only costs re-reading.

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
	durable int64      // guarded by Store.mu: the upload's size while busy
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

// setDurable publishes the size PartialSize reports while an Append runs.
func (s *Store) setDurable(id string, size int64) {
	s.mu.Lock()
	l := s.partials[id]
	l.busy, l.durable = true, size
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
// Calls for one id are serialised. It returns blob.ErrInvalidKey for a bad
// id, blob.ErrNotFound when offset is not 0 and id does not exist,
// blob.ErrOffset, blob.ErrNoSpace, accept's error, or the error of r or
// ctx together with the count of bytes kept.
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
	s.setDurable(id, size)
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
	// fsync mostly waits on the device while the hasher catches up.
	serr := f.Sync()
	herr := p.waitHash()
	if serr != nil || herr != nil {
		s.rollback(f, size)
		return 0, mapErr(errors.Join(serr, herr))
	}
	if size == 0 {
		if err := syncDir(filepath.Dir(f.Name())); err != nil {
			return 0, mapErr(err)
		}
	}
	s.setDurable(id, size+n)
	if n == 0 {
		pl.hc = &hashCache{ino: inode(fi), size: size, mtime: fi.ModTime(), saved: saved}
		pl.hc.state, _ = h.(encoding.BinaryMarshaler).MarshalBinary()
		return n, rerr
	}
	if size+n-saved >= stateEvery || saved == 0 {
		if err := s.saveState(id, fi, size+n, h); err != nil {
			// The bytes are durable; the next call rehashes the tail.
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

// rollback cuts an Append's bytes off again.
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

// PartialSize returns the size of partial upload id; while an Append runs
// it returns the size before that Append. It returns blob.ErrInvalidKey and
// blob.ErrNotFound.
func (s *Store) PartialSize(ctx context.Context, id string) (int64, error) {
	if err := checkKey(id); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// Holding s.mu keeps an Append from starting between the check and
	// the stat, so we never report bytes an Append has not made durable.
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.partials[id]; l != nil && l.busy {
		return l.durable, nil
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
	// The fsync comes before the xattr: the bytes are usually durable
	// already (each Append synced them; this covers a process that died
	// before its sync), so it has nothing to commit, whereas syncing the
	// xattr cost a journal commit per upload. The stored sum is only a
	// cache Stat recomputes when a crash lost it; the directory sync
	// below commits it with the rename on a journaling filesystem.
	if err := f.Sync(); err != nil {
		return blob.Info{}, mapErr(err)
	}
	if err := setSum(src, sum); err != nil && !errors.Is(err, errNoXattr) {
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
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return blob.Info{}, mapErr(err)
	}
	if err := syncDir(filepath.Dir(src)); err != nil {
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
