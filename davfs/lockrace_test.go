package davfs_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/blob/localblob"
	"github.com/filegate/filegate/model/dbtest"
)

// TestLockTakenDuringUpload starts a PUT whose body is slow, lets another
// user LOCK the file (or the folder it goes into) once the server is
// streaming the body, then finishes the body. The lock was granted before
// the new content was complete, so the PUT must not replace the content:
// 423, and the old bytes stay. Without a lock in between the same PUT
// succeeds, which shows the 423 comes from the lock.
func TestLockTakenDuringUpload(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db)
		alice := e.admin("alice")
		bob := e.admin("bob")
		tmp := filepath.Join(e.store.Blobs.(*localblob.Store).Root(), "tmp")
		for _, c := range []struct {
			name     string
			path     string
			existing bool
			lockPath string // "" for no lock during the upload
			want     int
		}{
			{"no lock: the upload lands", "/in1/a.dcm", true, "", 204},
			{"the file is locked mid-upload", "/in2/b.dcm", true, "/in2/b.dcm", 423},
			{"the folder is locked mid-upload of a new file", "/in3/c.dcm", false, "/in3", 423},
		} {
			t.Run(c.name, func(t *testing.T) {
				dir, name, _ := strings.Cut(strings.TrimPrefix(c.path, "/"), "/")
				folder := e.folder(e.root, dir)
				if c.existing {
					e.file(folder, name, "v1")
				}
				pr, pw := io.Pipe()
				// A failed check must not leave the request hanging, or
				// the server's Close would wait for it.
				t.Cleanup(func() { pw.CloseWithError(io.ErrUnexpectedEOF) })
				got := make(chan int, 1)
				go func() {
					req, err := http.NewRequest("PUT", e.url(c.path), pr)
					if err != nil {
						got <- -1
						return
					}
					req.SetBasicAuth(alice.user, alice.pass)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						got <- -1
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					got <- resp.StatusCode
				}()
				first := bytes.Repeat([]byte("a"), 64<<10)
				if _, err := pw.Write(first); err != nil {
					t.Fatal(err)
				}
				// The server opens its temporary blob only after the
				// request passed its lock checks.
				deadline := time.Now().Add(30 * time.Second)
				for {
					if ents, _ := os.ReadDir(tmp); len(ents) > 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("the server never started writing the body")
					}
					time.Sleep(5 * time.Millisecond)
				}
				if c.lockPath != "" {
					hdr := map[string]string{}
					if c.lockPath == "/"+dir {
						hdr["Depth"] = "infinity"
					}
					if code, _, _ := e.lock(bob, c.lockPath, "exclusive", hdr); code != 200 {
						t.Fatalf("LOCK %s during the upload: %d", c.lockPath, code)
					}
				}
				// Past the grace a fast body gets (lockRecheckAfter), as a
				// large upload is; this only makes sure, it measures nothing.
				time.Sleep(150 * time.Millisecond)
				if _, err := pw.Write([]byte("end")); err != nil {
					t.Fatal(err)
				}
				pw.Close()
				if code := <-got; code != c.want {
					t.Fatalf("PUT: %d, want %d", code, c.want)
				}
				n, err := e.repo.LiveByPath(t.Context(), c.path)
				switch {
				case c.want == 204 && (err != nil || e.content(n) != string(first)+"end"):
					t.Fatalf("the upload did not land: %v", err)
				case c.want == 423 && c.existing && (err != nil || e.content(n) != "v1"):
					t.Fatalf("the locked file changed: %v", err)
				case c.want == 423 && !c.existing && err == nil:
					t.Fatal("a new file appeared in the locked folder")
				}
			})
		}
	})
}
