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
