package tus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
)

// Locker serialises requests on one upload. Inside a process an entry in
// a map does it; on PostgreSQL a lease row in upload_locks does it across
// instances. The holder refreshes its rows every lease/3 (at most every
// second); a holder that dies stops refreshing, and once the lease has run
// out any instance takes the row over. On SQLite, which one process owns,
// the map alone is the lock.
//
// A HEAD or DELETE that finds the upload locked asks the holder to let go
// and waits (tusd's model: a resuming client's HEAD ends the PATCH its
// dead connection left behind). The holder in this process hears it at
// once, one in another process at its next refresh. A PATCH that finds the
// upload locked does not wait: it gets 423 Locked, and the client retries.
//
// Lease rows are written with synchronous_commit off for their own
// transaction: taking and giving back a lock then costs a round trip, not
// a WAL flush each (two per PATCH were most of a small PATCH's time). A
// database crash may lose the latest of them: a lost row is seen by its
// holder's next refresh, which ends the request, and a row that survives
// its DELETE runs out with its lease or is taken over by its holder.
//
// On SQLite a request that leaves an unfinished upload hands the upload's
// row on to the next request on it, which then need not read it again:
// rows change only under the lock, and one process owns the database.
type Locker struct {
	db      *bun.DB // nil on SQLite
	lease   time.Duration
	every   time.Duration
	holder  string
	log     *slog.Logger
	mu      sync.Mutex
	held    map[string]*lockEntry
	running bool
	stop    chan struct{}
	done    chan struct{}
	closed  bool
	// known remembers the owner and length of recent uploads, so a
	// request's checks before the lock need no query.
	known map[string]knownUpload
}

// lingerFor is how long, on SQLite, a lock entry keeps an unfinished
// upload's row for the client's next request.
const lingerFor = 2 * time.Second

// maxKnown bounds Locker.known.
const maxKnown = 4096

type lockEntry struct {
	released chan struct{}
	request  func() // asks the holding request to end
	shared   bool   // holds a row in upload_locks
	// rowAt is when the lease row was known to be ours: a refresh that
	// started before it may not have seen the row, so it proves nothing.
	rowAt time.Time
	// ending is set once Unlock starts: the request is finishing, and
	// asking it to end could only reach the next request on its
	// connection (tusd's release sets a read deadline on the connection).
	ending bool
	// lingering (SQLite only): no request holds the entry; it keeps sess
	// until timer fires, and the next lock on the id takes it over.
	lingering bool
	timer     *time.Timer
	// sess is the upload's row as the last request left it, when that
	// request wrote nothing it could not also write to the database.
	sess *Session
}

// Lock modes.
const (
	lockTry       = iota // fail at once with 423 when held
	lockWait             // wait for the holder to finish
	lockInterrupt        // ask the holder to stop, then wait
)

// NewLocker returns a locker over db: lease rows on PostgreSQL, in-process
// only on SQLite (or a nil db).
func NewLocker(db *bun.DB, lease time.Duration, log *slog.Logger) *Locker {
	if lease <= 0 {
		lease = DefaultLockLease
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Locker{lease: lease, every: min(lease/3, time.Second), log: log, held: map[string]*lockEntry{},
		known: map[string]knownUpload{}}
	if db != nil && model.IsPostgres(db) {
		l.db = db
	}
	host, _ := os.Hostname()
	l.holder = fmt.Sprintf("%s:%d:%s", host, os.Getpid(), model.NewID()[:12])
	return l
}

// NewLock returns a lock on upload id; see handler.Locker. It never fails.
func (l *Locker) NewLock(id string) (handler.Lock, error) {
	return &tusLock{l: l, id: id}, nil
}

type tusLock struct {
	l  *Locker
	id string
	// rs is the request holding the lock, nil for the door's own work.
	rs *reqState
}

// Lock takes the lock in the mode the request calls for. It returns
// handler.ErrFileLocked (423) when a PATCH finds it held and
// handler.ErrLockTimeout when ctx ends first.
func (k *tusLock) Lock(ctx context.Context, requestRelease func()) error {
	mode := lockTry
	shared := true
	if rs := stateFrom(ctx); rs != nil {
		if rs.interrupt {
			mode = lockInterrupt
		}
		shared = rs.freshID != k.id
		k.rs = rs
	}
	return k.l.lock(ctx, k.id, mode, shared, requestRelease, k.rs)
}

// Unlock releases the lock. On SQLite the entry of an upload the request
// left unfinished keeps the upload's row for the client's next request.
func (k *tusLock) Unlock() error {
	rs := k.rs
	if rs == nil || rs.finished || rs.method == http.MethodDelete || rs.sess == nil {
		return k.l.unlock(k.id, false, nil)
	}
	var sess *Session
	if rs.sess != nil && !rs.sessStale && rs.sess.ID == k.id {
		c := *rs.sess
		sess = &c
	}
	return k.l.unlock(k.id, true, sess)
}

// knownUpload returns the owner and length of upload id if this process
// saw them lately. Neither changes once the length is declared, so they
// need no query.
func (l *Locker) knownUpload(id string) (knownUpload, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k, ok := l.known[id]
	return k, ok
}

// knownUpload is what knownUpload remembers of an upload.
type knownUpload struct {
	owner string
	size  int64
}

// remember records s for knownUpload, if its length is declared.
func (l *Locker) remember(s *Session) {
	if s.SizeDeferred {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.known) >= maxKnown {
		clear(l.known) // a miss costs one query
	}
	l.known[s.ID] = knownUpload{owner: s.Owner, size: s.Size}
}

// acquire locks id for work the door does on its own (concatenation,
// sweeping).
func (l *Locker) acquire(ctx context.Context, id string, mode int, requestRelease func()) (handler.Lock, error) {
	if requestRelease == nil {
		requestRelease = func() {}
	}
	if err := l.lock(ctx, id, mode, true, requestRelease, nil); err != nil {
		return nil, err
	}
	return &tusLock{l: l, id: id}, nil
}

func (l *Locker) lock(ctx context.Context, id string, mode int, shared bool, requestRelease func(), rs *reqState) error {
	for {
		l.mu.Lock()
		e := l.held[id]
		if e != nil && e.lingering {
			// Take the entry over, with the row it keeps.
			e.timer.Stop()
			e.lingering, e.ending, e.timer = false, false, nil
			e.released, e.request = make(chan struct{}), requestRelease
			sess := e.sess
			e.sess = nil
			l.mu.Unlock()
			if rs != nil && sess != nil {
				rs.lockedSess = sess
			}
			return nil
		}
		if e == nil {
			e = &lockEntry{released: make(chan struct{}), request: requestRelease}
			l.held[id] = e
			l.mu.Unlock()
			if !shared || l.db == nil {
				return nil
			}
			err := l.lockShared(ctx, id, mode)
			if err != nil {
				l.mu.Lock()
				delete(l.held, id)
				l.mu.Unlock()
				close(e.released)
				return err
			}
			l.mu.Lock()
			e.shared, e.rowAt = true, time.Now()
			l.startRefresher()
			l.mu.Unlock()
			return nil
		}
		if mode == lockInterrupt && !e.ending {
			e.request()
		}
		l.mu.Unlock()
		if mode == lockTry {
			return handler.ErrFileLocked
		}
		select {
		case <-ctx.Done():
			return handler.ErrLockTimeout
		case <-e.released:
		}
	}
}

// nowMS is the database's clock in Unix milliseconds, so that instances
// with skewed clocks agree on when a lease ends.
const nowMS = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT"

// lockShared takes the lease row, waiting (and asking) as mode says.
func (l *Locker) lockShared(ctx context.Context, id string, mode int) error {
	asked := false
	delay := 50 * time.Millisecond
	for {
		ok, err := l.tryRow(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return handler.ErrLockTimeout
			}
			return modelErr(fmt.Errorf("%w: upload lock: %v", model.ErrUnavailable, err))
		}
		if ok {
			return nil
		}
		if mode == lockTry {
			return handler.ErrFileLocked
		}
		if mode == lockInterrupt && !asked {
			asked = true
			if _, err := l.db.NewRaw("UPDATE upload_locks SET release_requested = TRUE WHERE id = ? AND holder <> ?",
				id, l.holder).Exec(ctx); err != nil && ctx.Err() == nil {
				l.log.Warn("tus: ask lock holder to release", "id", id, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return handler.ErrLockTimeout
		case <-time.After(delay):
		}
		delay = min(delay*2, 500*time.Millisecond)
	}
}

// asyncCommit, evaluated inside a statement, lets that statement's
// transaction commit without waiting for its WAL to reach the disk (see
// Locker). Unlike a SET, it touches nothing beyond the transaction.
const asyncCommit = "set_config('synchronous_commit', 'off', true)"

// tryRow inserts the lease row, or takes over one whose lease ran out or
// that this process left behind (the in-process map says nobody here
// holds it).
func (l *Locker) tryRow(ctx context.Context, id string) (bool, error) {
	var got string
	err := l.db.NewRaw(`INSERT INTO upload_locks (id, holder, expires_ms, release_requested)
SELECT ?, ?, `+nowMS+` + ?, FALSE FROM (SELECT `+asyncCommit+`) AS async
ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, expires_ms = EXCLUDED.expires_ms, release_requested = FALSE
WHERE upload_locks.expires_ms < `+nowMS+` OR upload_locks.holder = EXCLUDED.holder
RETURNING id`, id, l.holder, l.lease.Milliseconds()).Scan(ctx, &got)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func (l *Locker) unlock(id string, linger bool, sess *Session) error {
	l.mu.Lock()
	e := l.held[id]
	if e == nil || e.lingering {
		l.mu.Unlock()
		return nil
	}
	e.ending = true
	if linger && l.db == nil && sess != nil && !l.closed {
		e.lingering, e.sess = true, sess
		e.timer = time.AfterFunc(lingerFor, func() { l.dropLingering(id, e) })
		close(e.released)
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	var err error
	if e.shared {
		// The row goes before the map entry: the next holder in this
		// process must not find our row and lose its own to our DELETE.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = l.db.NewRaw("DELETE FROM upload_locks WHERE id = ? AND holder = ? AND "+asyncCommit+" <> ''",
			id, l.holder).Exec(ctx)
		cancel()
		if err != nil {
			// The lease runs out on its own.
			l.log.Warn("tus: release upload lock", "id", id, "err", err)
		}
	}
	l.mu.Lock()
	delete(l.held, id)
	l.mu.Unlock()
	close(e.released)
	return nil
}

// dropLingering forgets entry e of id if it still lingers.
func (l *Locker) dropLingering(id string, e *lockEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[id] == e && e.lingering {
		delete(l.held, id)
	}
}

// startRefresher starts the lease refresher once; l.mu is held.
func (l *Locker) startRefresher() {
	if l.running || l.closed {
		return
	}
	l.running = true
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go l.refresh()
}

// refresh extends this process's leases, passes on release requests from
// other instances, and ends requests whose lease it could not keep.
func (l *Locker) refresh() {
	defer close(l.done)
	t := time.NewTicker(l.every)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		n := 0
		for _, e := range l.held {
			if e.shared {
				n++
			}
		}
		l.mu.Unlock()
		if n == 0 {
			lastOK = time.Now()
			continue
		}
		started := time.Now()
		type row struct {
			ID               string `bun:"id"`
			ReleaseRequested bool   `bun:"release_requested"`
		}
		var rows []row
		ctx, cancel := context.WithTimeout(context.Background(), l.lease/2)
		err := l.db.NewRaw("UPDATE upload_locks SET expires_ms = "+nowMS+" + ? WHERE holder = ? RETURNING id, release_requested",
			l.lease.Milliseconds(), l.holder).Scan(ctx, &rows)
		cancel()
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			l.log.Warn("tus: refresh upload locks", "err", err)
			if time.Since(lastOK) > l.lease*2/3 {
				// Our leases may run out before we can renew them; stop
				// the requests rather than risk two writers.
				l.requestAll(func(*lockEntry) bool { return true })
			}
			continue
		}
		lastOK = started
		kept := make(map[string]bool, len(rows))
		for _, r := range rows {
			kept[r.ID] = !r.ReleaseRequested
		}
		l.mu.Lock()
		for id, e := range l.held {
			if !e.shared || e.ending {
				continue
			}
			ok, found := kept[id]
			if (found && !ok) || (!found && e.rowAt.Before(started)) {
				// Under l.mu, so that Unlock cannot begin in between
				// and the release reach a request that already ended.
				// tusd's release only cancels a context.
				e.request()
			}
		}
		l.mu.Unlock()
	}
}

func (l *Locker) requestAll(match func(*lockEntry) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.held {
		if e.shared && !e.ending && match(e) {
			e.request()
		}
	}
}

// Close stops the refresher and drops this process's lease rows. It
// returns the database's error.
func (l *Locker) Close() error {
	l.mu.Lock()
	l.closed = true
	running := l.running
	l.mu.Unlock()
	if running {
		close(l.stop)
		<-l.done
	}
	l.mu.Lock()
	for _, e := range l.held {
		if e.lingering && e.timer != nil {
			e.timer.Stop()
		}
	}
	l.mu.Unlock()
	if l.db == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := l.db.NewRaw("DELETE FROM upload_locks WHERE holder = ?", l.holder).Exec(ctx)
	return err
}
