package model

import (
	"context"
	"database/sql/driver"
	"errors"
	"sync"
	"time"
)

// writerQueue lets one SQLite transaction run at a time in this process,
// waiting in Go instead of in SQLite's busy handler. SQLite has one
// writer; every transaction here begins IMMEDIATE (it takes the write lock
// at BEGIN), and a BEGIN that finds the lock taken sleeps in the busy
// handler, 1 ms at first and up to 100 ms later, and retries. Under eight
// concurrent writers those sleeps, not the work, were most of a small
// write's time (p99 near a second). A waiter here is woken the moment the
// transaction before it ends.
//
// Other processes on the same file (the filegate CLI while a server runs)
// still meet the busy handler, as does a transaction that waited longer
// than queueWait here: it then goes on to BEGIN and lets SQLite decide, so
// a nested transaction can never hang on this queue.
type writerQueue struct {
	slot chan struct{}
}

// queueWait is how long a transaction waits for its turn before it falls
// back to SQLite's own busy timeout.
const queueWait = 10 * time.Second

func newWriterQueue() *writerQueue { return &writerQueue{slot: make(chan struct{}, 1)} }

// acquire waits for the writer's turn; release ends it. release is a no-op
// when the wait ran out.
func (q *writerQueue) acquire(ctx context.Context) (release func(), err error) {
	select {
	case q.slot <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-q.slot }) }, nil
	default:
	}
	t := time.NewTimer(queueWait)
	defer t.Stop()
	select {
	case q.slot <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-q.slot }) }, nil
	case <-t.C:
		return func() {}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// queuedConnector opens SQLite connections whose transactions take turns
// through q.
type queuedConnector struct {
	drv driver.Driver
	dsn string
	q   *writerQueue
}

func (c *queuedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	return &queuedConn{Conn: conn, q: c.q}, nil
}

func (c *queuedConnector) Driver() driver.Driver { return c.drv }

// queuedConn is a driver connection whose BeginTx waits for its turn. It
// passes on every optional interface database/sql looks for.
type queuedConn struct {
	driver.Conn
	q *writerQueue
}

var errNoBeginTx = errors.New("model: SQLite driver has no BeginTx")

func (c *queuedConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	b, ok := c.Conn.(driver.ConnBeginTx)
	if !ok {
		return nil, errNoBeginTx
	}
	release, err := c.q.acquire(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := b.BeginTx(ctx, opts)
	if err != nil {
		release()
		return nil, err
	}
	return &queuedTx{Tx: tx, release: release}, nil
}

func (c *queuedConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return c.Conn.Prepare(query)
}

func (c *queuedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if e, ok := c.Conn.(driver.ExecerContext); ok {
		return e.ExecContext(ctx, query, args)
	}
	return nil, driver.ErrSkip
}

func (c *queuedConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if q, ok := c.Conn.(driver.QueryerContext); ok {
		return q.QueryContext(ctx, query, args)
	}
	return nil, driver.ErrSkip
}

func (c *queuedConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *queuedConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *queuedConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

// queuedTx gives the turn back when the transaction ends, whichever way.
type queuedTx struct {
	driver.Tx
	release func()
}

func (t *queuedTx) Commit() error {
	defer t.release()
	return t.Tx.Commit()
}

func (t *queuedTx) Rollback() error {
	defer t.release()
	return t.Tx.Rollback()
}
