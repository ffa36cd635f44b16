package model

import (
	"context"
	"testing"
	"time"

	"github.com/uptrace/bun"
)

// HotPrepared reports whether the repository runs its hot lookups as
// prepared statements, for tests that must know which path they checked.
func (r *Repo) HotPrepared() bool {
	r.hot.mu.Lock()
	defer r.hot.mu.Unlock()
	return r.hot.prepared
}

// GroupCommits returns how many shared transactions the repository's
// group commit has run (0 on PostgreSQL, which has none).
func (r *Repo) GroupCommits() int64 {
	if r.group == nil {
		return 0
	}
	return r.group.commits.Load()
}

// RunGrouped runs fn as one change of the repository's group commit.
func (r *Repo) RunGrouped(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) error) error {
	return r.group.run(ctx, fn)
}

// GroupPending returns how many changes are in the batch the group commit
// is committing, and how many wait in its queue for the next one.
func (r *Repo) GroupPending() (batch, queued int) {
	r.group.mu.Lock()
	defer r.group.mu.Unlock()
	return r.group.batch, len(r.group.queue)
}

// SetCheckPage makes Check read n rows per query until the test ends, so
// that a few files span several pages.
func SetCheckPage(t testing.TB, n int) {
	old := checkPage
	checkPage = n
	t.Cleanup(func() { checkPage = old })
}

// SaveIntegrityRun stores a run's progress and lease as the instance
// holding it would, for tests that stage a run an instance left behind.
func (r *Repo) SaveIntegrityRun(ctx context.Context, run *IntegrityRun, leaseUntil time.Time) error {
	return r.saveIntegrityRun(ctx, run, leaseUntil)
}

// WithSnapshotHooks returns o with before run before each database
// snapshot of Backup, and after between it and the copy of what it
// refers to.
func WithSnapshotHooks(o BackupOptions, before, after func()) BackupOptions {
	o.beforeSnapshot, o.afterSnapshot = before, after
	return o
}
