package model

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/filegate/filegate/model/blob"
)

// Store is filegate's one store: metadata in the repository, bytes in a
// blob store. Every door (WebDAV, tus, the files API) reads and writes
// files through it, so they all see one namespace. It never publishes a row
// before its bytes are durable, and never deletes bytes a committed row
// still refers to.
type Store struct {
	Repo  *Repo
	Blobs blob.Store
	// VerifyReads makes every read of a whole file check the bytes
	// against the file's recorded SHA-256 before it hands over the last
	// of them (see Open). It costs a SHA-256 per byte read.
	VerifyReads bool
	log         *slog.Logger

	// Downloads that found damage since the process started (see
	// DownloadDamage).
	damagedMissing, damagedSize, damagedSHA256 atomic.Int64
}

// DownloadDamage counts the downloads of this process that found a
// file's stored bytes damaged, by what they found: the blob missing,
// of another size than recorded, or (with VerifyReads) hashing to another
// SHA-256. Each such download was refused or cut short and logged; the
// counts let an alert fire at once rather than at the next integrity
// check.
type DownloadDamage struct {
	Missing, Size, SHA256 int64
}

// DownloadDamage returns the counts so far.
func (s *Store) DownloadDamage() DownloadDamage {
	return DownloadDamage{Missing: s.damagedMissing.Load(), Size: s.damagedSize.Load(), SHA256: s.damagedSHA256.Load()}
}

// NewStore joins a repository and a blob store.
func NewStore(repo *Repo, blobs blob.Store, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{Repo: repo, Blobs: blobs, log: log}
}

// BlobErr maps a blob store error to the package's sentinels.
func BlobErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, blob.ErrNotFound):
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	case errors.Is(err, blob.ErrNoSpace):
		return fmt.Errorf("%w: %v", ErrNoSpace, err)
	case errors.Is(err, blob.ErrUnavailable):
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	case errors.Is(err, blob.ErrOffset):
		return fmt.Errorf("%w: %v", ErrConflict, err)
	case errors.Is(err, blob.ErrInvalidKey):
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	case errors.Is(err, blob.ErrSize):
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return err
}

// PutRequest describes a streamed write of a whole file.
type PutRequest struct {
	Parent *Node
	Name   string
	Body   io.Reader
	Meta   FileMeta
	Actor  string
	Cond   Cond
	// MaxSize caps the body; zero means no cap. A longer body fails with
	// ErrTooLarge and changes nothing.
	MaxSize int64
	// BeforeRecord, when set, runs once the body is complete and durable
	// and before the content switches; an error from it changes nothing
	// and is returned as it is. Checks made before a long body (WebDAV
	// locks taken by others meanwhile) can be made again here.
	BeforeRecord func(ctx context.Context) error
}

// Put streams a body into a new blob and then records it as the content of
// parent/name in one transaction, so the old content stays visible until
// the new bytes are complete and durable. A body that fails or is cut off
// changes nothing. It returns the node and whether it was created, and the
// errors of Repo.PutFile plus ErrTooLarge, ErrNoSpace, ErrUnavailable and
// whatever p.BeforeRecord returns.
func (s *Store) Put(ctx context.Context, p PutRequest) (*Node, bool, error) {
	c, mime, err := s.WriteBlob(ctx, p.Name, p.Body, p.MaxSize)
	if err != nil {
		return nil, false, err
	}
	if p.Meta.MimeType == "" {
		p.Meta.MimeType = mime
	}
	if p.BeforeRecord != nil {
		if err := p.BeforeRecord(ctx); err != nil {
			s.deleteBlob(ctx, c.BlobKey) // no row refers to it yet
			return nil, false, err
		}
	}
	n, created, old, err := s.Repo.PutFile(ctx, p.Parent, p.Name, c, p.Meta, p.Actor, p.Cond)
	if err != nil {
		s.dropUnrecorded(ctx, c.BlobKey, err)
		return nil, false, err
	}
	s.deleteBlob(ctx, old)
	return n, created, nil
}

// ReplaceRequest is new content for an existing file.
type ReplaceRequest struct {
	Node *Node
	Body io.Reader
	// MimeType is the new type; empty means the one detected from the
	// name and the first bytes.
	MimeType string
	Cond     Cond
	// MaxSize caps the body; zero means no cap.
	MaxSize int64
	// BeforeRecord, when set, runs once the body is complete and durable
	// and before the content switches, as in PutRequest.
	BeforeRecord func(ctx context.Context) error
}

// Replace streams new content for an existing file, checking cond against
// its ETag inside the transaction that switches the content. It returns
// the errors of Repo.ReplaceContent plus ErrTooLarge, ErrNoSpace,
// ErrUnavailable and whatever p.BeforeRecord returns; on any of them the
// old content stays.
func (s *Store) Replace(ctx context.Context, p ReplaceRequest) (*Node, error) {
	c, sniffed, err := s.WriteBlob(ctx, p.Node.Name, p.Body, p.MaxSize)
	if err != nil {
		return nil, err
	}
	mimeType := p.MimeType
	if mimeType == "" {
		mimeType = sniffed
	}
	if p.BeforeRecord != nil {
		if err := p.BeforeRecord(ctx); err != nil {
			s.deleteBlob(ctx, c.BlobKey) // no row refers to it yet
			return nil, err
		}
	}
	out, old, err := s.Repo.ReplaceContent(ctx, p.Node.ID, c, mimeType, p.Cond)
	if err != nil {
		s.dropUnrecorded(ctx, c.BlobKey, err)
		return nil, err
	}
	s.deleteBlob(ctx, old)
	return out, nil
}

// WriteBlob streams body into a new committed blob that no row refers to
// yet, and returns it with the MIME type detected from name and the first
// bytes. The caller records it or deletes it; a crash in between leaves an
// orphan for SweepOrphans.
func (s *Store) WriteBlob(ctx context.Context, name string, body io.Reader, maxSize int64) (Content, string, error) {
	key := NewID()
	w, err := s.Blobs.Create(ctx, key)
	if err != nil {
		return Content{}, "", BlobErr(err)
	}
	defer w.Abort()
	br := bufio.NewReaderSize(body, 64<<10)
	head, _ := br.Peek(sniffLen)
	mime := DetectType(name, head)
	body = &readSide{r: br}
	src := body
	if maxSize > 0 {
		src = io.LimitReader(body, maxSize+1)
	}
	n, err := io.Copy(w, src)
	if err != nil {
		if rerr := body.(*readSide).err; rerr != nil {
			return Content{}, "", bodyErr(rerr)
		}
		return Content{}, "", BlobErr(err)
	}
	if maxSize > 0 && n > maxSize {
		return Content{}, "", ErrTooLarge
	}
	if err := ctx.Err(); err != nil {
		return Content{}, "", err
	}
	info, err := w.Commit(ctx)
	if err != nil {
		return Content{}, "", BlobErr(err)
	}
	return Content{BlobKey: key, Size: info.Size, SHA256: info.SHA256}, mime, nil
}

// readSide remembers the error of the body a write streams from, so a
// broken body (the client's fault) is told apart from a failing store.
type readSide struct {
	r   io.Reader
	err error
}

func (r *readSide) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// bodyErr classifies an error reading a request body: one that already
// says what it is (a cancelled or timed-out request, a size cap, a
// sentinel of this package) passes unchanged; anything else (a multipart
// part without its end, a cut connection) is the client's: ErrInvalid.
func bodyErr(err error) error {
	switch {
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrTooLarge), errors.Is(err, ErrUnavailable),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return err
	}
	return fmt.Errorf("%w: request body: %w", ErrInvalid, err)
}

// CommitUnknown reports whether err, from a metadata write, leaves the
// write's outcome unknown: the database went away or the context ended
// while the transaction may have been committing. The blob written for
// such a write must stay, since a committed row may refer to it; the
// orphan sweep, which looks at the rows, removes it if none does.
func CommitUnknown(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// dropUnrecorded deletes the blob of a write whose row failed, unless the
// failure leaves open whether the row was committed.
func (s *Store) dropUnrecorded(ctx context.Context, key string, err error) {
	if CommitUnknown(err) {
		s.log.Warn("metadata write failed with an unknown outcome; the orphan sweep decides on its blob", "key", key, "err", err)
		return
	}
	s.deleteBlob(ctx, key)
}

func (s *Store) deleteBlob(ctx context.Context, key string) {
	if key == "" {
		return
	}
	if err := s.Blobs.Delete(context.WithoutCancel(ctx), key); err != nil {
		// The orphan sweep retries; nothing visible depends on it.
		s.log.Warn("delete blob", "key", key, "err", err)
	}
}

// Open returns a reader over a file's content. With VerifyReads, a read
// of the whole file from its start hashes the bytes as they pass and,
// if they do not hash to the recorded SHA-256, withholds the last read's
// bytes and fails it with ErrCorrupt: a download then ends short, which
// every client notices, instead of handing over altered bytes as if they
// were whole. Ranges are not checked. It returns ErrNotFound for a folder
// and for a file replaced or purged since n was read (its old blob goes
// right after the change).
//
// A blob that is missing under a row that still names it, or is of
// another size than recorded, is damage: Open fails with ErrCorrupt, and
// logs it, rather than answer "not found" for a listed file or serve a
// whole-looking file of the wrong length. On a store that implements
// blob.SizedOpener (S3) the reader trusts the recorded size and sends its
// first request at its first read, so a download costs one request to
// the store instead of two; a blob found missing or resized then fails
// that read the same way instead of failing the open.
func (s *Store) Open(ctx context.Context, n *Node) (blob.Reader, error) {
	if n.IsDir || n.BlobKey == "" {
		return nil, ErrNotFound
	}
	if so, ok := s.Blobs.(blob.SizedOpener); ok {
		r, err := so.OpenSized(ctx, n.BlobKey, n.Size)
		if err != nil {
			return nil, BlobErr(err)
		}
		return s.verifying(n, &sizedReader{Reader: r, damage: func(err error) error { return s.damage(ctx, n, err) }}), nil
	}
	r, err := s.Blobs.Open(ctx, n.BlobKey)
	switch {
	case errors.Is(err, blob.ErrNotFound):
		return nil, s.damage(ctx, n, err)
	case err != nil:
		return nil, BlobErr(err)
	case r.Size() != n.Size:
		// Served as it is, a shortened blob would be a whole-looking
		// shorter file.
		r.Close()
		return nil, s.damage(ctx, n, fmt.Errorf("%w: %q holds %d bytes, %d were recorded", blob.ErrSize, n.BlobKey, r.Size(), n.Size))
	}
	return s.verifying(n, r), nil
}

// damage classifies a blob that a download found missing or resized. A
// missing one whose row has moved on (replaced or purged since n was
// read) lost a race and is ErrNotFound. Anything else is damage to the
// store: ErrCorrupt, logged with the path.
func (s *Store) damage(ctx context.Context, n *Node, err error) error {
	if errors.Is(err, blob.ErrNotFound) {
		key, kerr := s.Repo.blobKeyOf(context.WithoutCancel(ctx), n.ID)
		switch {
		case errors.Is(kerr, ErrNotFound) || (kerr == nil && key != n.BlobKey):
			return fmt.Errorf("%w: the file changed while it was being opened", ErrNotFound)
		case kerr != nil:
			return kerr
		}
		s.damagedMissing.Add(1)
	} else {
		s.damagedSize.Add(1)
	}
	s.log.Error("a download found the file's stored bytes missing or of another size than recorded; it was refused or cut short",
		"path", n.Path, "file", n.ID, "blob", n.BlobKey, "recorded_size", n.Size, "err", err)
	return fmt.Errorf("%w: %v", ErrCorrupt, err)
}

// verifying wraps r in a verifyingReader when VerifyReads asks for it.
func (s *Store) verifying(n *Node, r blob.Reader) blob.Reader {
	if !s.VerifyReads || n.SHA256 == "" {
		return r
	}
	return &verifyingReader{Reader: r, want: n.SHA256, h: sha256.New(), sequential: true,
		damaged: func(got string) {
			s.damagedSHA256.Add(1)
			s.log.Error("a download's bytes do not match the file's record; it was cut short", "path", n.Path,
				"file", n.ID, "blob", n.BlobKey, "recorded", n.SHA256, "stored", got)
		}}
}

// sizedReader maps the errors of a reader opened without asking the
// store (blob.SizedOpener): a missing blob or one of another size shows
// only when it is read, and goes through Store.damage then, once.
type sizedReader struct {
	blob.Reader
	damage func(error) error
	once   sync.Once
	judged error
}

func (r *sizedReader) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	return n, r.mapped(err)
}

func (r *sizedReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.Reader.ReadAt(p, off)
	return n, r.mapped(err)
}

func (r *sizedReader) mapped(err error) error {
	switch {
	case err == nil || err == io.EOF:
		return err
	case errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrSize):
		r.once.Do(func() { r.judged = r.damage(err) })
		return r.judged
	}
	return BlobErr(err)
}

// verifyingReader hashes a blob read from its first byte to its last in
// order, and fails the read that reaches the end when the sum is not the
// recorded one. Any other pattern (a seek elsewhere, ReadAt) is a range
// and passes unchecked.
type verifyingReader struct {
	blob.Reader
	want       string
	h          hash.Hash
	pos        int64 // where the next sequential Read starts
	sequential bool
	damaged    func(got string)
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.Reader.Read(p)
	if !v.sequential {
		return n, err
	}
	v.h.Write(p[:n])
	v.pos += int64(n)
	if v.pos == v.Size() {
		v.sequential = false // checked once, whatever follows
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			v.damaged(got)
			return 0, fmt.Errorf("%w: the stored bytes hash to %s", ErrCorrupt, got)
		}
	}
	return n, err
}

// Seek keeps the check only for the seeks http.ServeContent makes to
// learn the size (to the end, then back to the start).
func (v *verifyingReader) Seek(off int64, whence int) (int64, error) {
	at, err := v.Reader.Seek(off, whence)
	if err == nil && at != v.pos && !(at == v.Size() && v.pos == 0) {
		v.sequential = false
	}
	return at, err
}

func (v *verifyingReader) ReadAt(p []byte, off int64) (int, error) {
	v.sequential = false
	return v.Reader.ReadAt(p, off)
}

// Purge removes a node and its subtree for good, then their bytes.
func (s *Store) Purge(ctx context.Context, id string) error {
	keys, err := s.Repo.Purge(ctx, id)
	if err != nil {
		return err
	}
	for _, k := range keys {
		s.deleteBlob(ctx, k)
	}
	return nil
}

// QuotaRoom tells early whether a write of size bytes over existing (nil
// for a new file) fits in q, so that a door can refuse before it takes a
// body that could not be kept; a negative size (not announced) fits. The
// write itself checks again, atomically. It returns ErrQuota and
// ErrUnavailable.
func (s *Store) QuotaRoom(ctx context.Context, q Quota, existing *Node, size int64) error {
	more := q.chargeFor(existing, size)
	if q.Bytes <= 0 || q.Account == "" || size < 0 || more <= 0 {
		return nil
	}
	used, err := s.Repo.QuotaUsed(ctx, q.Account)
	if err != nil {
		return err
	}
	return q.fits(used, more)
}

// Copy copies src (a file, or a folder with everything below it) to
// dstParent/name, sharing or server-side copying the blobs. With overwrite
// an existing destination is archived first; without, it fails with
// ErrExists. The copies belong to actor and count against quota: a copy
// that would not fit fails with ErrQuota before anything is copied (and
// each file is checked again as it is recorded). It returns the new node
// and whether the destination existed.
func (s *Store) Copy(ctx context.Context, src, dstParent *Node, name, actor string, quota Quota, overwrite bool) (*Node, bool, error) {
	dstPath := JoinPath(dstParent.Path, name)
	if src.IsDir && IsWithin(dstPath, src.Path) {
		return nil, false, fmt.Errorf("%w: a folder cannot be copied into itself", ErrConflict)
	}
	if err := s.quotaForCopy(ctx, src, quota); err != nil {
		return nil, false, err
	}
	existed := false
	if old, err := s.Repo.LiveByPath(ctx, dstPath); err == nil {
		if !overwrite {
			return nil, false, ErrExists
		}
		existed = true
		if old.ID == src.ID {
			return old, true, nil
		}
		if _, err := s.Repo.Archive(ctx, old.ID); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, false, err
		}
	} else if !errors.Is(err, ErrNotFound) {
		return nil, false, err
	}
	n, err := s.copyNode(ctx, src, dstParent, name, actor, quota)
	return n, existed, err
}

// quotaForCopy checks that a copy of src fits in quota as a whole.
func (s *Store) quotaForCopy(ctx context.Context, src *Node, quota Quota) error {
	if quota.Bytes <= 0 {
		return nil
	}
	size := src.Size
	if src.IsDir {
		nodes, err := s.Repo.Subtree(ctx, src)
		if err != nil {
			return err
		}
		size = 0
		for _, n := range nodes {
			if !n.IsDir {
				size += n.Size
			}
		}
	}
	return s.QuotaRoom(ctx, quota, nil, size)
}

func (s *Store) copyNode(ctx context.Context, src, dstParent *Node, name, actor string, quota Quota) (*Node, error) {
	if !src.IsDir {
		key := NewID()
		info, err := s.Blobs.Copy(ctx, src.BlobKey, key)
		if err != nil {
			return nil, BlobErr(err)
		}
		meta := FileMeta{MimeType: src.MimeType, Tags: src.Tags, Title: src.Title, Description: src.Description,
			Source: src.Source, PHI: src.PHI, ModTime: src.ModTime}
		n, _, _, err := s.Repo.PutFile(ctx, dstParent, name, Content{BlobKey: key, Size: info.Size, SHA256: info.SHA256},
			meta, actor, Cond{NoOverwrite: true, Quota: quota})
		if err != nil {
			s.dropUnrecorded(ctx, key, err)
		}
		return n, err
	}
	folder, err := s.Repo.CreateFolder(ctx, dstParent, name, actor)
	if err != nil {
		return nil, err
	}
	children, err := s.Repo.Children(ctx, src.ID, ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, c := range children {
		if _, err := s.copyNode(ctx, c, folder, c.Name, actor, quota); err != nil {
			return nil, err
		}
	}
	return folder, nil
}

// BlobReferences reports which of keys something other than a file still
// needs: a tus upload that published its bytes but did not record them
// yet (its next HEAD records them) needs its blob for as long as the
// upload lives, however old the blob is.
type BlobReferences func(ctx context.Context, keys []string) ([]string, error)

// SweepOrphans removes uncommitted blob leftovers and committed blobs that
// no node and none of others refers to, if they are older than age
// (younger ones may belong to a write whose row is about to commit). It
// returns how many it removed, and the first database or blob store error,
// which stops the sweep.
func (s *Store) SweepOrphans(ctx context.Context, age time.Duration, others ...BlobReferences) (int, error) {
	before := time.Now().Add(-age)
	removed, err := s.Blobs.Sweep(ctx, before)
	if err != nil {
		return removed, BlobErr(err)
	}
	var candidates []string
	err = s.Blobs.Walk(ctx, func(key string, info blob.Info) error {
		if info.ModTime.Before(before) {
			candidates = append(candidates, key)
		}
		return nil
	})
	if err != nil {
		return removed, BlobErr(err)
	}
	for len(candidates) > 0 {
		batch := candidates[:min(500, len(candidates))]
		candidates = candidates[len(batch):]
		var used []string
		if err := s.Repo.db.NewSelect().Table("nodes").Column("blob_key").
			Where("blob_key IN (?)", bunIn(batch)).Scan(ctx, &used); err != nil {
			return removed, dbErr(err)
		}
		for _, refs := range others {
			more, err := refs(ctx, batch)
			if err != nil {
				return removed, err
			}
			used = append(used, more...)
		}
		inUse := make(map[string]bool, len(used))
		for _, k := range used {
			inUse[k] = true
		}
		for _, k := range batch {
			if !inUse[k] {
				if err := s.Blobs.Delete(ctx, k); err == nil {
					removed++
				}
			}
		}
	}
	return removed, nil
}
