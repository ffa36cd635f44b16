package model

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"
)

// groupCommit runs small SQLite write transactions of concurrent requests
// together: whoever finds no batch running starts one, and every change
// queued meanwhile joins the next transaction, each inside its own
// savepoint. With synchronous=FULL every SQLite commit waits for a WAL
// fsync, and SQLite has one writer, so eight clients creating files took
// turns at one fsync each; now one fsync commits them all. A change that
// fails is rolled back to its savepoint alone and gets its error; a commit
// that fails gives its error to every change in the batch, none of which
// is then written.
//
// Callers wait for the outcome even when their context ends, because a
// change that already ran is committed with the batch: returning early
// would report a failure for a write that happened. A change whose
// context has ended before its turn is skipped with that error.
type groupCommit struct {
	db *bun.DB
	// conn is the connection batches run on, kept between batches. A
	// SQLite connection drops its page cache whenever it finds that
	// another connection wrote since its last transaction; batches that
	// took whichever pooled connection was free found that every time
	// and read the index pages they update back in. Only drain uses it.
	conn *bun.Conn

	mu      sync.Mutex
	queue   []*groupChange
	running bool
	batch   int // size of the batch being committed

	commits atomic.Int64 // transactions run, for tests
}

type groupChange struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx bun.Tx) error
	done chan error
}

// maxGroup bounds one batch, so that a burst cannot hold the writer for
// long.
const maxGroup = 64

// groupChangeTimeout bounds one change's statements inside a batch.
const groupChangeTimeout = 30 * time.Second

// run queues fn for the next batch and returns its outcome once the batch
// has committed or rolled back.
func (g *groupCommit) run(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) error) error {
	c := &groupChange{ctx: ctx, fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	if !g.running {
		g.running = true
		go g.drain()
	}
	g.mu.Unlock()
	return <-c.done
}

// drain commits batches until the queue is empty.
func (g *groupCommit) drain() {
	for {
		g.mu.Lock()
		n := min(len(g.queue), maxGroup)
		if n == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		batch := g.queue[:n:n]
		g.queue = g.queue[n:]
		g.batch = n
		g.mu.Unlock()
		g.commit(batch)
		g.mu.Lock()
		g.batch = 0
		g.mu.Unlock()
	}
}

func (g *groupCommit) commit(batch []*groupChange) {
	g.commits.Add(1)
	results := make([]error, len(batch))
	err := g.runInTx(func(ctx context.Context, tx bun.Tx) error {
		for i, c := range batch {
			if err := c.ctx.Err(); err != nil {
				results[i] = err
				continue
			}
			if _, err := tx.ExecContext(ctx, "SAVEPOINT change"); err != nil {
				return err
			}
			cctx, cancel := context.WithTimeout(ctx, groupChangeTimeout)
			results[i] = c.fn(cctx, tx)
			cancel()
			if results[i] != nil {
				if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT change"); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT change"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && g.conn != nil {
		// The connection may be what failed; the next batch takes a
		// fresh one.
		g.conn.Close()
		g.conn = nil
	}
	for i, c := range batch {
		if err != nil {
			c.done <- dbErr(err)
		} else {
			c.done <- results[i]
		}
	}
}

// runInTx runs fn in a transaction on the batches' own connection, taking
// one from the pool first when there is none.
func (g *groupCommit) runInTx(fn func(ctx context.Context, tx bun.Tx) error) error {
	ctx := context.Background()
	if g.conn == nil {
		c, err := g.db.Conn(ctx)
		if err != nil {
			return err
		}
		g.conn = &c
	}
	return g.conn.RunInTx(ctx, nil, fn)
}
