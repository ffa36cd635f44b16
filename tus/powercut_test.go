package tus_test

import (
	"bytes"
	"context"
	"os"
	"path"
	"path/filepath"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/tus"
)

// A PATCH is acknowledged once its bytes are in the partial blob's file,
// not fsynced, so a power cut may take back bytes the client was told
// were stored. The upload must then roll back to what the file holds:
// HEAD reports the file's size whatever the upload's row or this
// process's memory of the upload say, and a client resuming from there
// gets a file with the right SHA-256. The cut is simulated by truncating
// the data file, once with the same instance still running (its memory
// and the row it carries between requests claim more) and once with a
// new instance (a restart).
func TestPowerCutRollsBackTheOffset(t *testing.T) {
	for _, restart := range []bool{false, true} {
		name := map[bool]string{false: "same instance", true: "restarted"}[restart]
		t.Run(name, func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, db *bun.DB) {
				root := t.TempDir()
				e := newEnv(t, db, root, tus.Config{})
				body := data(3<<20+333, 31)
				loc := e.create("alice", "/", "cut.bin", int64(len(body)))
				for off := 0; off < 3<<20; off += 1 << 20 {
					wantStatus(t, "PATCH", e.patch("alice", loc, int64(off), body[off:off+1<<20], nil), 204)
				}
				id := path.Base(loc)
				// As if the row had been touched after the last PATCH.
				if _, err := db.NewUpdate().Table("upload_sessions").Set("upload_offset = ?", 3<<20).
					Where("id = ?", id).Exec(context.Background()); err != nil {
					t.Fatal(err)
				}
				// Below the first PATCH, so the hash state saved after it
				// leads the file too.
				const cut = 700<<10 + 5
				if err := os.Truncate(filepath.Join(root, "partial", "data", id), cut); err != nil {
					t.Fatal(err)
				}
				if restart {
					e.door.Close()
					e = newEnv(t, db, root, tus.Config{})
				}
				if off := e.offset("alice", loc); off != cut {
					t.Fatalf("HEAD after the cut: offset %d, want %d", off, cut)
				}
				wantStatus(t, "PATCH at the acknowledged offset", e.patch("alice", loc, 3<<20, body[3<<20:], nil), 409)
				wantStatus(t, "resume", e.patch("alice", loc, cut, body[cut:], nil), 204)
				n, got := e.file("/cut.bin")
				if !bytes.Equal(got, body) {
					t.Fatal("content differs")
				}
				if n.SHA256 != sum256(body) || n.Size != int64(len(body)) {
					t.Fatalf("recorded {%d %s}, want {%d %s}", n.Size, n.SHA256, len(body), sum256(body))
				}
			})
		})
	}
}

// An upload whose file was recorded but whose row never heard of it (the
// instance died between the two commits) is only marked done by its next
// HEAD: the file is not given the same content again as a new version.
func TestRecordedUploadIsNotRecordedAgain(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		body := data(300<<10, 32)
		loc := e.create("alice", "/", "twice.bin", int64(len(body)))
		wantStatus(t, "PATCH", e.patch("alice", loc, 0, body, nil), 204)
		before, _ := e.file("/twice.bin")
		if _, err := db.NewUpdate().Table("upload_sessions").Set("status = ?", tus.StatusNew).
			Where("id = ?", path.Base(loc)).Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
		// A fresh instance: no request state or lock entry carries the row.
		e.door.Close()
		e2 := newEnv(t, db, e.blobs.Root(), tus.Config{})
		if off := e2.offset("alice", loc); off != int64(len(body)) {
			t.Fatalf("HEAD offset %d, want %d", off, len(body))
		}
		after, got := e2.file("/twice.bin")
		if !bytes.Equal(got, body) {
			t.Fatal("content differs")
		}
		if after.ID != before.ID || after.Version != before.Version || after.ETag != before.ETag {
			t.Fatalf("file became {%s v%d %s}, was {%s v%d %s}", after.ID, after.Version, after.ETag, before.ID, before.Version, before.ETag)
		}
		var status string
		if err := db.NewSelect().Table("upload_sessions").Column("status").Where("id = ?", path.Base(loc)).
			Scan(context.Background(), &status); err != nil || status != tus.StatusCompleted {
			t.Fatalf("upload status %q, %v; want %q", status, err, tus.StatusCompleted)
		}
	})
}
