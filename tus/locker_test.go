package tus_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/tus"
)

// refreshFailures counts the locker's "could not refresh" warnings. After
// one, the locker may rightly ask its holders to let go, as their leases
// may run out.
type refreshFailures struct{ n *atomic.Int64 }

func (h refreshFailures) Enabled(context.Context, slog.Level) bool { return true }
func (h refreshFailures) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "tus: refresh upload locks" {
		h.n.Add(1)
	}
	return nil
}
func (h refreshFailures) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h refreshFailures) WithGroup(string) slog.Handler      { return h }

// A holder is asked to let go only when someone asked or its lease is
// lost, never because the lease refresher ran while the lock was being
// taken or given back: tusd's release sets a read deadline on the
// connection, and a stray one cut the next request on it (the soak saw
// 401s and 499s to valid requests after tus PATCHes).
//
// With a lease this short, a refresh slower than half the lease (the
// database of a loaded machine) makes the locker ask its holders to let
// go, as it must. It logs each such failure, and one lock is held at a
// time here, so each failure accounts for at most one request to let go.
func TestLockerNeverAsksAnUnchallengedHolderToRelease(t *testing.T) {
	db := dbtest.Open(t, dbtest.Postgres)
	var failed atomic.Int64
	l := tus.NewLocker(db, 150*time.Millisecond, slog.New(refreshFailures{&failed})) // refreshes every 50 ms
	t.Cleanup(func() { l.Close() })
	var asked atomic.Int64
	ctx := context.Background()
	deadline := time.Now().Add(3 * time.Second)
	cycles := 0
	for time.Now().Before(deadline) {
		k, err := l.NewLock("race-upload")
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Lock(ctx, func() { asked.Add(1) }); err != nil {
			t.Fatalf("cycle %d: %v", cycles, err)
		}
		if err := k.Unlock(); err != nil {
			t.Fatal(err)
		}
		cycles++
	}
	// Asks first: a failure is logged before the ask it accounts for.
	n := asked.Load()
	if f := failed.Load(); n > f {
		t.Fatalf("asked to release %d times in %d lock/unlock cycles that nobody challenged (%d failed lease refreshes account for %d)",
			n, cycles, f, f)
	}
	t.Logf("%d lock/unlock cycles, %d asks to release after %d failed lease refreshes", cycles, asked.Load(), failed.Load())
}
