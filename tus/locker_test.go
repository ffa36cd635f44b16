package tus_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/tus"
)

// A holder is asked to let go only when someone asked or its lease is
// lost, never because the lease refresher ran while the lock was being
// taken or given back: tusd's release sets a read deadline on the
// connection, and a stray one cut the next request on it (the soak saw
// 401s and 499s to valid requests after tus PATCHes).
func TestLockerNeverAsksAnUnchallengedHolderToRelease(t *testing.T) {
	db := dbtest.Open(t, dbtest.Postgres)
	l := tus.NewLocker(db, 150*time.Millisecond, nil) // refreshes every 50 ms
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
	if n := asked.Load(); n != 0 {
		t.Fatalf("asked to release %d times in %d lock/unlock cycles that nobody challenged", n, cycles)
	}
	t.Logf("%d lock/unlock cycles", cycles)
}
