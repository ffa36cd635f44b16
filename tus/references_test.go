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

// An upload whose bytes were published but whose file was never recorded
// (its instance died in between, or the database refused the record) is
// finished by its next HEAD, however late the client comes back: the
// orphan sweep keeps the published blob while the upload lives, and
// removes it once the upload is gone.
func TestSweepKeepsPublishedBytesOfUnfinishedUploads(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		e := newEnv(t, db, "", tus.Config{})
		body := data(200<<10, 7)
		loc := e.create("alice", "/", "late.bin", int64(len(body)))
		wantStatus(t, "first PATCH", e.patch("alice", loc, 0, body[:50<<10], nil), 204)
		// The crashed instance's last PATCH and its publish: the bytes are
		// under the upload's blob key, and no file refers to them.
		id := path.Base(loc)
		if _, err := e.blobs.Append(ctx, id, 50<<10, bytes.NewReader(body[50<<10:]), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := e.blobs.Publish(ctx, id, tus.BlobKey(id)); err != nil {
			t.Fatal(err)
		}
		e.absent("/late.bin")

		// A sweep that counts only files would take the bytes; one that
		// asks the door keeps them.
		if n, err := e.store.SweepOrphans(ctx, 0, e.door.PendingBlobs); err != nil || n != 0 {
			t.Fatalf("sweep with the door's references removed %d (%v), want 0", n, err)
		}
		if off := e.offset("alice", loc); off != int64(len(body)) {
			t.Fatalf("HEAD offset %d, want %d", off, len(body))
		}
		if _, got := e.file("/late.bin"); !bytes.Equal(got, body) {
			t.Fatal("recorded content differs")
		}
		// Recorded: the file refers to the blob now, the upload no longer
		// needs it, and the sweep still leaves it.
		if n, err := e.store.SweepOrphans(ctx, 0, e.door.PendingBlobs); err != nil || n != 0 {
			t.Fatalf("sweep after the record removed %d (%v), want 0", n, err)
		}
		if _, got := e.file("/late.bin"); !bytes.Equal(got, body) {
			t.Fatal("content lost to the sweep")
		}

		// The same crash on an upload whose row then goes without its
		// bytes (an expiry whose blob delete failed): the blob is an
		// orphan and the sweep takes it.
		loc2 := e.create("alice", "/", "dropped.bin", 10)
		id2 := path.Base(loc2)
		if _, err := e.blobs.Append(ctx, id2, 0, bytes.NewReader(body[:10]), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := e.blobs.Publish(ctx, id2, tus.BlobKey(id2)); err != nil {
			t.Fatal(err)
		}
		if n, err := e.store.SweepOrphans(ctx, 0, e.door.PendingBlobs); err != nil || n != 0 {
			t.Fatalf("sweep of a live upload's blob removed %d (%v), want 0", n, err)
		}
		if _, err := db.NewDelete().Table("upload_sessions").Where("id = ?", id2).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := e.store.SweepOrphans(ctx, 0, e.door.PendingBlobs); err != nil || n != 1 {
			t.Fatalf("sweep after the upload went removed %d (%v), want 1", n, err)
		}
	})
}
