package model

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"
)

// Audit decisions.
const (
	AuditAllow = "allow"
	AuditDeny  = "deny"
)

// GenesisHash is the prev_hash of the first audit row.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// AuditEntry is one authorization decision. Seq, PrevHash and Hash are
// assigned when it is appended. It never holds a credential: subjects are
// "user:<name>", "token:<id>" (the id, not the secret) or "link:<key id>".
type AuditEntry struct {
	bun.BaseModel `bun:"table:audit"`

	Seq       int64     `bun:"seq,pk"`
	At        time.Time `bun:"at"`
	Door      string    `bun:"door"`
	Subject   string    `bun:"subject"`
	Action    string    `bun:"action"`
	Object    string    `bun:"object"`
	NodeID    string    `bun:"node_id"`
	Decision  string    `bun:"decision"`
	Rule      string    `bun:"rule"`
	Remote    string    `bun:"remote"`
	RequestID string    `bun:"request_id"`
	PrevHash  string    `bun:"prev_hash"`
	Hash      string    `bun:"hash"`
}

// ComputeHash returns the chain hash of e given the previous row's hash:
// SHA-256 over the previous hash and every field, each length-prefixed so
// that no two different rows serialise alike. The time enters as Unix
// microseconds, the precision both databases keep.
func (e *AuditEntry) ComputeHash(prev string) string {
	h := sha256.New()
	field := func(s string) {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
		h.Write([]byte{';'})
	}
	field(prev)
	field(strconv.FormatInt(e.Seq, 10))
	field(strconv.FormatInt(e.At.UnixMicro(), 10))
	for _, s := range []string{e.Door, e.Subject, e.Action, e.Object, e.NodeID, e.Decision, e.Rule, e.Remote, e.RequestID} {
		field(s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

type auditHead struct {
	bun.BaseModel `bun:"table:audit_head"`

	ID   int64  `bun:"id,pk"`
	Seq  int64  `bun:"seq"`
	Hash string `bun:"hash"`
}

// AuditLog appends to and reads the hash-chained audit table. It has no
// method that updates or deletes a row, and the database refuses both.
//
// Appends are group-committed: concurrent callers queue their entries,
// one of them writes the whole queue in a single transaction that locks
// the chain head, and each caller returns once its entry is durable. On
// PostgreSQL that transaction is one statement while this instance wrote
// the last row (see appendAfter).
type AuditLog struct {
	db  *bun.DB
	now func() time.Time
	// group is the repository's SQLite group commit, when the log was
	// made by Repo.NewAuditLog: a batch of audit rows then shares its
	// transaction, and its WAL fsync, with the writes of the requests
	// being audited.
	group *groupCommit

	mu       sync.Mutex
	queue    []*pendingAudit
	flushing bool

	// head is the chain head this process's last append left, which the
	// next append on PostgreSQL assumes; nil when unknown. Only the
	// flusher (one at a time, see flushing) touches it.
	head *auditHead
}

type pendingAudit struct {
	e    *AuditEntry
	done chan error
}

// maxAuditBatch bounds one transaction of group-committed appends.
const maxAuditBatch = 256

// NewAuditLog returns the audit log of a migrated database.
func NewAuditLog(db *bun.DB) *AuditLog {
	return &AuditLog{db: db, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}
}

// NewAuditLog returns the audit log of the repository's database. On
// SQLite its appends join the repository's group commit: one transaction,
// and one fsync, then commits a batch of audit rows together with the
// short writes queued beside it.
func (r *Repo) NewAuditLog() *AuditLog {
	a := NewAuditLog(r.db)
	a.group = r.group
	return a
}

// Append writes entries to the end of the chain and returns once they are
// committed. The time is set when it is zero. It returns ErrInvalid for an
// entry without subject, action, object or decision, and ErrUnavailable
// when the database cannot be reached, in which case nothing of this call
// was written.
func (a *AuditLog) Append(ctx context.Context, entries ...AuditEntry) error {
	return a.AppendAsync(ctx, entries...)()
}

// AppendAsync queues entries for the next group commit and returns at
// once; the returned wait blocks until they are committed and returns what
// Append would have. It lets a request do its own work while its audit row
// is being written, as long as it calls wait before it answers. An invalid
// entry queues nothing and wait returns ErrInvalid.
func (a *AuditLog) AppendAsync(ctx context.Context, entries ...AuditEntry) (wait func() error) {
	if len(entries) == 0 {
		return func() error { return nil }
	}
	for i := range entries {
		e := &entries[i]
		if e.Subject == "" || e.Action == "" || e.Object == "" || (e.Decision != AuditAllow && e.Decision != AuditDeny) {
			err := fmt.Errorf("%w: audit entry needs subject, action, object and decision", ErrInvalid)
			return func() error { return err }
		}
	}
	waits := make([]chan error, 0, len(entries))
	a.mu.Lock()
	for i := range entries {
		e := entries[i]
		if e.At.IsZero() {
			e.At = a.now()
		}
		e.At = e.At.UTC().Truncate(time.Microsecond)
		for _, f := range []*string{&e.Door, &e.Subject, &e.Action, &e.Object, &e.NodeID, &e.Decision, &e.Rule, &e.Remote, &e.RequestID} {
			*f = auditText(*f)
		}
		p := &pendingAudit{e: &e, done: make(chan error, 1)}
		a.queue = append(a.queue, p)
		waits = append(waits, p.done)
	}
	if !a.flushing {
		a.flushing = true
		go func() {
			a.mu.Lock()
			a.flushLocked(context.WithoutCancel(ctx))
			a.mu.Unlock()
		}()
	}
	a.mu.Unlock()
	var once sync.Once
	var first error
	return func() error {
		once.Do(func() {
			for _, w := range waits {
				if err := <-w; err != nil && first == nil {
					first = err
				}
			}
		})
		return first
	}
}

// auditText makes s storable in a text column of either database: invalid
// UTF-8 and NUL bytes (which PostgreSQL refuses) become U+FFFD. A row
// must never be refused for what a hostile request put into it, since a
// request whose row cannot be written is refused itself.
func auditText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// flushLocked writes the queue in batches until it is empty. It is called
// with a.mu held and returns with it held, releasing it while writing so
// that more entries can queue up behind the running transaction.
func (a *AuditLog) flushLocked(ctx context.Context) {
	for len(a.queue) > 0 {
		n := min(len(a.queue), maxAuditBatch)
		batch := a.queue[:n:n]
		a.queue = a.queue[n:]
		a.mu.Unlock()
		err := a.write(ctx, batch)
		for _, p := range batch {
			p.done <- err
		}
		a.mu.Lock()
	}
	a.flushing = false
}

func (a *AuditLog) write(ctx context.Context, batch []*pendingAudit) error {
	rows, next, err := a.extend(ctx, batch)
	if err != nil {
		a.head = nil
		return dbErr(err)
	}
	a.head = &next
	for i, p := range batch {
		*p.e = *rows[i]
	}
	return nil
}

// extend links batch onto the chain and stores it, returning the rows as
// written and the new head. While this instance wrote the last row it
// tries the one-statement append first; when another instance has moved
// the head since, it takes the head's lock and reads it.
func (a *AuditLog) extend(ctx context.Context, batch []*pendingAudit) ([]*AuditEntry, auditHead, error) {
	if a.head != nil && IsPostgres(a.db) {
		rows, next := chain(batch, *a.head)
		ok, err := a.appendAfter(ctx, *a.head, next, rows)
		if err != nil || ok {
			return rows, next, err
		}
	}
	var rows []*AuditEntry
	var next auditHead
	runTx := func(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) error) error {
		return a.db.RunInTx(ctx, nil, fn)
	}
	if a.group != nil {
		runTx = a.group.run
	}
	err := runTx(ctx, func(ctx context.Context, tx bun.Tx) error {
		head := new(auditHead)
		q := tx.NewSelect().Model(head).Where("id = 1")
		if IsPostgres(tx) {
			q = q.For("UPDATE")
		}
		if err := q.Scan(ctx); err != nil {
			return err
		}
		rows, next = chain(batch, *head)
		if _, err := tx.NewInsert().Model(&rows).Exec(ctx); err != nil {
			return err
		}
		_, err := tx.NewUpdate().Model(&next).Column("seq", "hash").WherePK().Exec(ctx)
		return err
	})
	return rows, next, err
}

// chain links batch's entries onto head and returns them with the new head.
func chain(batch []*pendingAudit, head auditHead) ([]*AuditEntry, auditHead) {
	rows := make([]*AuditEntry, len(batch))
	for i, p := range batch {
		e := *p.e
		e.Seq = head.Seq + 1
		e.PrevHash = head.Hash
		e.Hash = e.ComputeHash(e.PrevHash)
		head.Seq, head.Hash = e.Seq, e.Hash
		rows[i] = &e
	}
	return rows, head
}

// auditColumns are the audit table's columns in AuditEntry order.
const auditColumns = "seq, at, door, subject, action, object, node_id, decision, rule, remote, request_id, prev_hash, hash"

// appendAfter writes rows and moves the head from prev to next in one
// statement, which changes nothing and reports false when the head is no
// longer prev. The usual append (this instance wrote the last row) then
// costs one round trip instead of five (BEGIN, SELECT … FOR UPDATE,
// INSERT, UPDATE, COMMIT). The conditional UPDATE waits for a concurrent
// appender's lock like SELECT … FOR UPDATE does and rechecks the row once
// it commits, so two instances can never both extend the same head.
func (a *AuditLog) appendAfter(ctx context.Context, prev, next auditHead, rows []*AuditEntry) (bool, error) {
	var q strings.Builder
	q.WriteString("WITH h AS (UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1 AND seq = ? AND hash = ? RETURNING id) ")
	q.WriteString("INSERT INTO audit (" + auditColumns + ") SELECT v.* FROM (VALUES ")
	args := make([]any, 0, 4+13*len(rows))
	args = append(args, next.Seq, next.Hash, prev.Seq, prev.Hash)
	for i, e := range rows {
		if i > 0 {
			q.WriteString(", ")
		}
		// The cast types the column: a bare literal in VALUES is text.
		q.WriteString("(?, ?::timestamptz, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
		args = append(args, e.Seq, e.At, e.Door, e.Subject, e.Action, e.Object, e.NodeID, e.Decision,
			e.Rule, e.Remote, e.RequestID, e.PrevHash, e.Hash)
	}
	q.WriteString(") AS v (" + auditColumns + ") WHERE EXISTS (SELECT 1 FROM h)")
	res, err := a.db.NewRaw(q.String(), args...).Exec(ctx)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	return n == int64(len(rows)), nil
}

// AuditReport is the outcome of Verify.
type AuditReport struct {
	// Rows is how many rows were checked.
	Rows int64
	// HeadSeq and HeadHash are the chain head: keep HeadHash somewhere
	// else (a ticket, a log shipper) to detect a rewrite of the whole tail.
	HeadSeq  int64
	HeadHash string
	// OK is true when every row and the head agree.
	OK bool
	// BadSeq is the first row that does not fit the chain (0 when OK or
	// when only the head disagrees), and Problem says how.
	BadSeq  int64
	Problem string
}

// Verify recomputes the whole chain, streaming the rows in order, and
// reports the first row whose hash, link to its predecessor or sequence
// number is wrong, or a head that does not match the last row. It returns
// an error only when the database cannot be read.
func (a *AuditLog) Verify(ctx context.Context) (AuditReport, error) {
	var rep AuditReport
	head := new(auditHead)
	if err := a.db.NewSelect().Model(head).Where("id = 1").Scan(ctx); err != nil {
		return rep, dbErr(err)
	}
	rep.HeadSeq, rep.HeadHash = head.Seq, head.Hash
	prevSeq, prevHash := int64(0), GenesisHash
	fail := func(seq int64, problem string) (AuditReport, error) {
		rep.BadSeq, rep.Problem = seq, problem
		return rep, nil
	}
	for {
		var rows []*AuditEntry
		err := a.db.NewSelect().Model(&rows).Where("seq > ?", prevSeq).Order("seq").Limit(1000).Scan(ctx)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return rep, dbErr(err)
		}
		if len(rows) == 0 {
			break
		}
		for _, e := range rows {
			switch {
			case e.Seq != prevSeq+1:
				return fail(prevSeq+1, fmt.Sprintf("row %d is missing", prevSeq+1))
			case e.PrevHash != prevHash:
				return fail(e.Seq, "its link to the previous row is broken")
			case e.ComputeHash(prevHash) != e.Hash:
				return fail(e.Seq, "its content does not match its hash")
			}
			rep.Rows++
			prevSeq, prevHash = e.Seq, e.Hash
		}
	}
	if prevSeq != head.Seq || prevHash != head.Hash {
		rep.Problem = fmt.Sprintf("the chain ends at row %d but the head says %d: rows were removed or added", prevSeq, head.Seq)
		return rep, nil
	}
	rep.OK = true
	return rep, nil
}

// AuditFilter selects audit rows; empty fields match everything.
type AuditFilter struct {
	Subject   string
	Action    string
	Decision  string
	NodeID    string
	Door      string
	RequestID string
	Since     time.Time
	Until     time.Time
	// Before returns rows older than this seq (a cursor for paging
	// backwards from the newest row); zero means from the newest.
	Before int64
	// Limit caps the result; zero means 100, and at most 1000 are
	// returned.
	Limit int
}

// Query returns the rows that pass f, newest first.
func (a *AuditLog) Query(ctx context.Context, f AuditFilter) ([]*AuditEntry, error) {
	var rows []*AuditEntry
	q := a.db.NewSelect().Model(&rows).Order("seq DESC")
	for col, v := range map[string]string{"subject": f.Subject, "action": f.Action, "decision": f.Decision,
		"node_id": f.NodeID, "door": f.Door, "request_id": f.RequestID} {
		if v != "" {
			q = q.Where("? = ?", bun.Ident(col), v)
		}
	}
	if !f.Since.IsZero() {
		q = q.Where("at >= ?", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		q = q.Where("at < ?", f.Until.UTC())
	}
	if f.Before > 0 {
		q = q.Where("seq < ?", f.Before)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q = q.Limit(int64(min(limit, 1000)))
	if err := q.Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, dbErr(err)
	}
	return rows, nil
}
