package model_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

// TestPathLookupUsesThePathIndexAsTheTableGrows fills a fresh PostgreSQL
// database the way a new deployment's first import does and checks that
// the per-request path lookup then probes the unique path index. Before
// the repository analysed nodes itself, pg_class still said "one row"
// (from when the migrations built the indexes), and the planner read the
// whole sibling index for every lookup instead.
func TestPathLookupUsesThePathIndexAsTheTableGrows(t *testing.T) {
	ctx := context.Background()
	db := dbtest.Open(t, dbtest.Postgres)
	r := model.NewRepo(db)
	root := tree(t, r)["/"]
	const files = 1500
	for i := range files {
		c := model.Content{BlobKey: fmt.Sprintf("k%d", i), Size: 1, SHA256: strings.Repeat("a", 64)}
		if _, _, _, err := r.PutFile(ctx, root, fmt.Sprintf("scan-%04d.dcm", i), c, model.FileMeta{}, "", model.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	// The ANALYZE runs in the background; wait for its estimate to land.
	var estimate float64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err := db.QueryRowContext(ctx, "SELECT reltuples FROM pg_class WHERE oid = 'nodes'::regclass").Scan(&estimate); err != nil {
			t.Fatal(err)
		}
		if estimate >= files/2 {
			break
		}
	}
	if estimate < files/2 {
		t.Fatalf("planner estimate for nodes after %d inserts = %.0f rows, want at least %d", files, estimate, files/2)
	}
	var plan []string
	rows, err := db.QueryContext(ctx, "EXPLAIN SELECT n.id FROM nodes AS n WHERE n.path IN ('/scan-0007.dcm', '/') AND n.archived_at IS NULL AND n.status = 'completed'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "nodes_live_path") || strings.Contains(text, "Filter: (path") {
		t.Fatalf("path lookup does not probe the path index:\n%s", text)
	}
}
