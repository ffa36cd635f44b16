package tus_test

import (
	"bytes"
	"context"
	"path"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/tus"
)

// An instance that dies after the last PATCH's bytes are durable but
// before it published them must not leave an upload that HEAD calls done
// and that never appears: the next HEAD, on any instance, publishes it.
func TestCrashBeforePublishIsFinishedByHead(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		body := data(300<<10, 21)
		loc := e.create("alice", "/", "late.bin", int64(len(body)))
		wantStatus(t, "first PATCH", e.patch("alice", loc, 0, body[:100<<10], nil), 204)
		// The crashed instance's last PATCH: its bytes reached the
		// partial blob, and nothing after that ran.
		id := path.Base(loc)
		n, err := e.blobs.Append(context.Background(), id, 100<<10, bytes.NewReader(body[100<<10:]), nil)
		if err != nil || n != int64(len(body)-100<<10) {
			t.Fatalf("append: %d, %v", n, err)
		}
		e.absent("/late.bin")
		if off := e.offset("alice", loc); off != int64(len(body)) {
			t.Fatalf("HEAD offset %d, want %d", off, len(body))
		}
		if _, got := e.file("/late.bin"); !bytes.Equal(got, body) {
			t.Fatal("published content differs")
		}
		// A client that PATCHes the (empty) rest anyway is told it is done.
		wantStatus(t, "empty PATCH at the end", e.patch("alice", loc, int64(len(body)), nil, nil), 204)
		if e.offset("alice", loc) != int64(len(body)) {
			t.Fatal("offset moved")
		}
	})
}
