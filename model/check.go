package model

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/blob"
)

// CheckKind names what is wrong with a file's stored bytes.
type CheckKind string

// What Check can find wrong with a file.
const (
	// CheckMissing: no blob is stored under the key the file's row names.
	CheckMissing CheckKind = "missing"
	// CheckSize: the stored blob is longer or shorter than the row says.
	CheckSize CheckKind = "size"
	// CheckSHA256: the stored bytes hash to another SHA-256 than the one
	// recorded when they were written: they were altered or decayed.
	CheckSHA256 CheckKind = "sha256"
	// CheckUnreadable: the blob is there but reading it failed midway.
	CheckUnreadable CheckKind = "unreadable"
)

// CheckOptions tunes Check. The zero value checks every file's size and
// SHA-256 with two readers at full speed.
type CheckOptions struct {
	// Workers is how many files are read at once; 0 means 2.
	Workers int
	// MaxRate caps the bytes read per second, over all workers, so that a
	// check of a live store leaves the disk (or the S3 budget) to the
	// users; 0 means no cap.
	MaxRate int64
	// Quick compares sizes only (a Stat per file, no bytes read). It
	// finds missing and truncated blobs, not altered ones.
	Quick bool
	// Under limits the check to a folder's subtree, given as its path;
	// empty or "/" checks everything.
	Under string
	// After resumes an earlier check: only files whose id sorts after it
	// are checked (see Progress).
	After string
	// Progress, when set, is called as the check moves through the
	// files, with an id to pass as After to resume from there (every file
	// up to it has been judged) and the totals so far. It is called from
	// one goroutine at a time and should return quickly.
	Progress func(after string, sofar CheckReport)
}

// CheckProblem is one file whose stored bytes do not match its row.
type CheckProblem struct {
	Kind     CheckKind
	NodeID   string
	Path     string
	BlobKey  string
	Archived bool
	// Want is what the row records (size in bytes, or SHA-256) and Got
	// what the store holds; both are empty for CheckMissing, and Got is
	// the read error for CheckUnreadable.
	Want, Got string
}

// CheckReport sums up a Check.
type CheckReport struct {
	// Files is how many files were checked; Bytes how many bytes were
	// read and hashed (0 in quick mode).
	Files, Bytes int64
	// Problems is how many files were reported to the callback.
	Problems int64
	// Changed is how many files were replaced or removed while they were
	// being checked, and so were not judged: their old bytes may be gone
	// for good reason.
	Changed int64
	Elapsed time.Duration
}

// checkPage is how many rows one query of Check reads. It is a variable
// only so that tests can spread a few files over several pages.
var checkPage = 500

type checkedFile struct {
	ID         string     `bun:"id"`
	Path       string     `bun:"path"`
	BlobKey    string     `bun:"blob_key"`
	Size       int64      `bun:"size"`
	SHA256     string     `bun:"sha256"`
	ArchivedAt *time.Time `bun:"archived_at"`
}

// Check reads back the bytes of every file (archived ones too, whose
// bytes a restore needs) and compares them with what was recorded when
// they were written: the blob must exist, have the recorded size and hash
// to the recorded SHA-256. It calls problem, from one goroutine at a time,
// for each file that fails, and returns the totals. A file replaced or
// removed while it was being read is counted as Changed and not judged.
// Rows are read in pages of the id order, so a check of millions of files
// holds no long transaction and little memory, and each blob is streamed.
//
// It returns ErrInvalid for a negative option, ErrNotFound when Under is
// not a folder, ErrUnavailable when the database or the blob store cannot
// be reached (a store that is down says nothing about the bytes in it),
// and ctx's error when it ends; the report then covers what was checked.
func (s *Store) Check(ctx context.Context, o CheckOptions, problem func(CheckProblem)) (CheckReport, error) {
	start := time.Now()
	if o.Workers < 0 || o.MaxRate < 0 {
		return CheckReport{}, fmt.Errorf("%w: workers and rate cannot be negative", ErrInvalid)
	}
	if o.Workers == 0 {
		o.Workers = 2
	}
	o.Workers = min(o.Workers, checkPage) // see pages on why
	under := ""
	if o.Under != "" && o.Under != "/" {
		p, err := CleanPath(o.Under)
		if err != nil {
			return CheckReport{}, err
		}
		n, err := s.Repo.LiveByPath(ctx, p)
		if err != nil {
			return CheckReport{}, err
		}
		if !n.IsDir {
			return CheckReport{}, fmt.Errorf("%w: %s is a file, not a folder", ErrNotFound, p)
		}
		under = p
	}
	c := &checker{s: s, o: o, pace: newPacer(o.MaxRate), problem: problem}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	files := make(chan checkedFile)
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Go(func() {
			buf := make([]byte, 1<<20)
			for f := range files {
				if err := c.one(ctx, f, buf); err != nil {
					cancel(err)
				}
			}
		})
	}
	err := c.pages(ctx, under, o.After, files, start)
	close(files)
	wg.Wait()
	// A worker that had to stop the check, or the caller, cancelled ctx:
	// its cause is the error to return, not the Canceled pages saw.
	if cause := context.Cause(ctx); cause != nil {
		err = cause
	}
	return c.report(start), err
}

func (c *checker) report(start time.Time) CheckReport {
	return CheckReport{Files: c.files.Load(), Bytes: c.bytes.Load(), Problems: c.problems.Load(),
		Changed: c.changed.Load(), Elapsed: time.Since(start)}
}

type checker struct {
	s       *Store
	o       CheckOptions
	pace    *pacer
	mu      sync.Mutex // serialises problem
	problem func(CheckProblem)

	files, bytes, problems, changed atomic.Int64
}

// pages feeds files, in id order, to the workers until the rows run out.
func (c *checker) pages(ctx context.Context, under, after string, files chan<- checkedFile, start time.Time) error {
	// fed is the last id of the page before the one just fed: all of
	// that page has been judged once the next is handed out, since the
	// workers (at most a page of them) take files in order.
	fed := after
	err := scanBlobRows(ctx, c.s.Repo.db, under, after, func(page []checkedFile) error {
		for _, f := range page {
			select {
			case files <- f:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if c.o.Progress != nil && fed != "" {
			c.o.Progress(fed, c.report(start))
		}
		fed = page[len(page)-1].ID
		return nil
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// scanBlobRows calls fn with every file row that has bytes, in id order
// from after on, a page at a time; under, when set, limits the rows to
// that folder's subtree.
func scanBlobRows(ctx context.Context, db bun.IDB, under, after string, fn func(page []checkedFile) error) error {
	for {
		var page []checkedFile
		q := db.NewSelect().Table("nodes").
			Column("id", "path", "blob_key", "size", "sha256", "archived_at").
			Where("is_dir = ?", false).Where("blob_key <> ''").Where("id > ?", after).
			OrderExpr("id").Limit(int64(checkPage))
		if under != "" {
			// A prefix, not LIKE: paths may hold % and _. substr counts
			// characters on both databases, not bytes.
			q = q.Where("substr(path, 1, ?) = ?", utf8.RuneCountInString(under)+1, under+"/")
		}
		if err := q.Scan(ctx, &page); err != nil {
			return dbErr(err)
		}
		if len(page) == 0 {
			return nil
		}
		if err := fn(page); err != nil {
			return err
		}
		if len(page) < checkPage {
			return nil
		}
		after = page[len(page)-1].ID
	}
}

// one checks a file and reports what is wrong with it. It returns an
// error only when the whole check must stop.
func (c *checker) one(ctx context.Context, f checkedFile, buf []byte) error {
	kind, want, got, err := c.judge(ctx, f, buf)
	if err != nil {
		return err
	}
	if kind != "" {
		// The row may have moved on while the bytes were read: a PUT
		// that replaced the file deletes the old blob right after.
		key, err := c.s.Repo.blobKeyOf(ctx, f.ID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err != nil || key != f.BlobKey {
			c.changed.Add(1)
			return nil
		}
	}
	c.files.Add(1)
	if kind == "" {
		return nil
	}
	c.problems.Add(1)
	if c.problem != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.problem(CheckProblem{Kind: kind, NodeID: f.ID, Path: f.Path, BlobKey: f.BlobKey,
			Archived: f.ArchivedAt != nil, Want: want, Got: got})
	}
	return nil
}

// judge compares a file's blob with its row.
func (c *checker) judge(ctx context.Context, f checkedFile, buf []byte) (kind CheckKind, want, got string, err error) {
	wantSize := strconv.FormatInt(f.Size, 10)
	if c.o.Quick {
		info, err := c.s.Blobs.Stat(ctx, f.BlobKey)
		if kind, got, err := blobProblem(ctx, err); kind != "" || err != nil {
			return kind, "", got, err
		}
		if info.Size != f.Size {
			return CheckSize, wantSize, strconv.FormatInt(info.Size, 10), nil
		}
		return "", "", "", nil
	}
	r, err := c.s.Blobs.Open(ctx, f.BlobKey)
	if kind, got, err := blobProblem(ctx, err); kind != "" || err != nil {
		return kind, "", got, err
	}
	defer r.Close()
	if r.Size() != f.Size {
		return CheckSize, wantSize, strconv.FormatInt(r.Size(), 10), nil
	}
	h := sha256.New()
	// Hiding WriteTo makes the copy use buf, 1 MiB, whatever the store's
	// reader would pick.
	n, err := io.CopyBuffer(h, struct{ io.Reader }{c.pace.reader(ctx, r)}, buf)
	c.bytes.Add(n)
	if err != nil {
		if ctx.Err() != nil {
			return "", "", "", ctx.Err()
		}
		if errors.Is(err, blob.ErrUnavailable) {
			return "", "", "", BlobErr(err)
		}
		return CheckUnreadable, wantSize, err.Error(), nil
	}
	if n != f.Size {
		return CheckSize, wantSize, strconv.FormatInt(n, 10), nil
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if f.SHA256 != "" && sum != f.SHA256 {
		return CheckSHA256, f.SHA256, sum, nil
	}
	return "", "", "", nil
}

// blobProblem sorts an error opening a blob into a finding about the file
// (missing, or unreadable with the error's text) or a reason to stop the
// whole check.
func blobProblem(ctx context.Context, err error) (CheckKind, string, error) {
	switch {
	case err == nil:
		return "", "", nil
	case ctx.Err() != nil:
		return "", "", ctx.Err()
	case errors.Is(err, blob.ErrNotFound):
		return CheckMissing, "", nil
	case errors.Is(err, blob.ErrUnavailable):
		return "", "", BlobErr(err)
	}
	return CheckUnreadable, err.Error(), nil
}

// pacer spreads reads so that all of them together stay under a rate: the
// n-th byte may not be read before start + n/rate.
type pacer struct {
	rate  int64
	start time.Time
	mu    sync.Mutex
	taken int64
}

func newPacer(rate int64) *pacer { return &pacer{rate: rate, start: time.Now()} }

func (p *pacer) reader(ctx context.Context, r io.Reader) io.Reader {
	if p.rate <= 0 {
		return r
	}
	return &pacedReader{ctx: ctx, r: r, p: p}
}

// wait books n bytes and sleeps until they are due.
func (p *pacer) wait(ctx context.Context, n int) error {
	p.mu.Lock()
	p.taken += int64(n)
	due := p.start.Add(time.Duration(float64(p.taken) / float64(p.rate) * float64(time.Second)))
	p.mu.Unlock()
	d := time.Until(due)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type pacedReader struct {
	ctx context.Context
	r   io.Reader
	p   *pacer
}

func (r *pacedReader) Read(b []byte) (int, error) {
	// Small reads keep the pace smooth at low rates.
	if most := int(max(r.p.rate/8, 64<<10)); len(b) > most {
		b = b[:most]
	}
	n, err := r.r.Read(b)
	if n > 0 {
		if werr := r.p.wait(r.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}
