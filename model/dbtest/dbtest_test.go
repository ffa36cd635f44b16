package dbtest

import (
	"context"
	"os"
	"testing"

	"github.com/uptrace/bun"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestEachKindIsMigratedAndWritable(t *testing.T) {
	Each(t, func(t *testing.T, db *bun.DB) {
		var n int
		if err := db.NewRaw("SELECT count(*) FROM nodes WHERE id = 'root'").Scan(context.Background(), &n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("root nodes = %d, want 1", n)
		}
	})
}
