package tus_test

import (
	"bytes"
	"context"
	"path"
	"testing"
	"time"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/tus"
)

// twoInstances are two doors sharing one PostgreSQL database and one blob
// folder, each behind its own HTTP server, as two filegate processes are.
func twoInstances(t *testing.T, lease time.Duration) (*env, *env) {
	db := dbtest.Open(t, dbtest.Postgres)
	root := t.TempDir()
	a := newEnv(t, db, root, tus.Config{LockLease: lease})
	b := newEnv(t, db, root, tus.Config{LockLease: lease})
	return a, b
}

// rowHeld reports whether an instance holds the lease row of upload id.
func rowHeld(e *env, id string) bool {
	var n int
	err := e.db.NewRaw("SELECT COUNT(*) FROM upload_locks WHERE id = ?", id).Scan(context.Background(), &n)
	return err == nil && n == 1
}

// on returns loc as served by the other instance.
func on(e *env, loc string) string { return e.url() + path.Base(loc) }

func TestTwoInstancesResume(t *testing.T) {
	a, b := twoInstances(t, 3*time.Second)
	body := data(3<<20, 11)
	loc := a.create("alice", "/", "two.bin", int64(len(body)))
	wantStatus(t, "A", a.patch("alice", loc, 0, body[:1<<20], nil), 204)
	if off := b.offset("alice", on(b, loc)); off != 1<<20 {
		t.Fatalf("B sees offset %d", off)
	}
	wantStatus(t, "B", b.patch("alice", on(b, loc), 1<<20, body[1<<20:], nil), 204)
	if _, got := a.file("/two.bin"); !bytes.Equal(got, body) {
		t.Fatal("content differs")
	}
}

func TestTwoInstancesSerialisePatches(t *testing.T) {
	a, b := twoInstances(t, 3*time.Second)
	body := data(2<<20, 12)
	loc := a.create("alice", "/", "serial.bin", int64(len(body)))
	pw, done := startPatchAs(loc, "alice", "x")
	pw.Write(body[:256<<10])
	waitFor(t, "A to hold the lock row", func() bool { return rowHeld(a, path.Base(loc)) })
	// The lock row is in the database, so B refuses too.
	wantStatus(t, "B while A writes", b.patch("alice", on(b, loc), 0, data(len(body), 13), nil), 423, 409)
	pw.Write(body[256<<10:])
	pw.Close()
	if resp := <-done; resp == nil || resp.StatusCode != 204 {
		t.Fatalf("A's PATCH: %v", resp)
	}
	if _, got := b.file("/serial.bin"); !bytes.Equal(got, body) {
		t.Fatal("content corrupted")
	}
}

// A HEAD on B asks A, through the lock row, to end a PATCH whose client
// went quiet; A lets go at its next refresh and B answers with the bytes
// A kept.
func TestTwoInstancesHeadInterruptsStalledPatch(t *testing.T) {
	a, b := twoInstances(t, 3*time.Second)
	body := data(1<<20, 14)
	loc := a.create("alice", "/", "stall.bin", int64(len(body)))
	pw, done := startPatchAs(loc, "alice", "x")
	pw.Write(body[:300<<10])
	waitFor(t, "A to write bytes", func() bool { return partialBytes(a.blobs.Root()) >= 256<<10 })
	off := b.offset("alice", on(b, loc))
	if off <= 0 || off > 300<<10 {
		t.Fatalf("B's HEAD: offset %d", off)
	}
	if resp := <-done; resp == nil || resp.StatusCode < 400 {
		t.Fatalf("A's interrupted PATCH: %v", resp)
	}
	pw.Close()
	wantStatus(t, "B resumes", b.patch("alice", on(b, loc), off, body[off:], nil), 204)
	if _, got := a.file("/stall.bin"); !bytes.Equal(got, body) {
		t.Fatal("content differs")
	}
}

// A lock row whose holder died (it no longer refreshes) blocks PATCHes
// until its lease runs out; then another instance takes it over.
func TestDeadHolderLeaseRunsOut(t *testing.T) {
	a, b := twoInstances(t, 2*time.Second)
	body := data(1000, 15)
	loc := a.create("alice", "/", "dead.bin", 1000)
	wantStatus(t, "A", a.patch("alice", loc, 0, body[:400], nil), 204)
	ctx := context.Background()
	// The dead holder's lease runs for an hour while B's PATCH is refused,
	// so that a slow machine cannot let the lease run out before B asks;
	// then it is cut to 2 s, for the HEAD to wait out.
	lease := func(ms int) {
		t.Helper()
		if _, err := a.db.NewRaw(`INSERT INTO upload_locks (id, holder, expires_ms) VALUES (?, 'crashed-instance',
		(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + ?)
		ON CONFLICT (id) DO UPDATE SET expires_ms = EXCLUDED.expires_ms WHERE upload_locks.holder = EXCLUDED.holder`,
			path.Base(loc), ms).Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	lease(3600 * 1000)
	wantStatus(t, "B during the lease", b.patch("alice", on(b, loc), 400, body[400:], nil), 423)
	lease(2000)
	// HEAD waits for the lease to run out rather than failing.
	if off := b.offset("alice", on(b, loc)); off != 400 {
		t.Fatalf("HEAD after the lease: %d", off)
	}
	wantStatus(t, "B after the lease", b.patch("alice", on(b, loc), 400, body[400:], nil), 204)
	if _, got := b.file("/dead.bin"); !bytes.Equal(got, body) {
		t.Fatal("content differs")
	}
	var n int
	if err := a.db.NewRaw("SELECT COUNT(*) FROM upload_locks").Scan(ctx, &n); err != nil || n != 0 {
		t.Fatalf("%d lock rows left: %v", n, err)
	}
}
