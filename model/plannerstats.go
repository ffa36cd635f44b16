package model

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/uptrace/bun"
)

// minAnalyzeRows is how many new nodes it takes before the first ANALYZE.
const minAnalyzeRows = 200

// plannerStats keeps PostgreSQL's row estimates for nodes close to the
// truth while the table grows fast, as it does in the first minutes of a
// deployment or during an import. The migrations build nodes' indexes
// while the table holds only the root, so pg_class says "about one row"
// until autovacuum's next look (up to a minute away, and only after 10%
// growth). With that estimate the planner cannot tell a unique path probe
// from a full scan of a partial index, picked the scan for the per-request
// path lookup, and read every row on every request: 900 buffer reads and
// 6 ms per lookup at 2,000 files, which capped small writes near 400/s.
//
// So the repository counts the nodes it inserts and runs ANALYZE in the
// background whenever the count since the last one reaches the row count
// it found then (at least minAnalyzeRows): the table doubles between runs,
// so a table of n rows is analysed about log2(n) times in its life, and a
// run samples at most 30,000 rows however large it is. Each instance
// counts its own inserts; an extra ANALYZE from another instance is
// harmless. SQLite's planner does not rely on such statistics (it assumes
// an equality on a unique index beats a scan), so nothing runs there.
type plannerStats struct {
	db        *bun.DB
	mu        sync.Mutex
	inserted  int64
	threshold int64
	running   bool
}

func newPlannerStats(db *bun.DB) *plannerStats {
	if !IsPostgres(db) {
		return nil
	}
	return &plannerStats{db: db, threshold: minAnalyzeRows}
}

// grew records n committed inserts into nodes and starts an ANALYZE when
// enough have piled up. It never waits for the ANALYZE.
func (p *plannerStats) grew(n int) {
	if p == nil || n <= 0 {
		return
	}
	p.mu.Lock()
	p.inserted += int64(n)
	start := !p.running && p.inserted >= p.threshold
	if start {
		p.running = true
	}
	p.mu.Unlock()
	if start {
		go p.analyze()
	}
}

// analyze runs ANALYZE nodes and sets the next threshold from the row
// count it found. A failure (the database is away, or the account does not
// own the table) only means the estimates stay as they were until
// autovacuum refreshes them, so it is logged and the counting goes on.
func (p *plannerStats) analyze() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rows := float64(-1)
	_, err := p.db.ExecContext(ctx, "ANALYZE nodes")
	if err == nil {
		err = p.db.QueryRowContext(ctx, "SELECT reltuples FROM pg_class WHERE oid = 'nodes'::regclass").Scan(&rows)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running = false
	p.inserted = 0
	if err != nil {
		slog.Warn("analyze nodes failed; row estimates wait for autovacuum", "err", err)
		return
	}
	p.threshold = max(minAnalyzeRows, int64(rows))
}
