package faults

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob/localblob"
)

// ledger compares the blob folder with the rows that refer to blobs.
type ledger struct {
	rows     int      // rows with a blob key
	blobs    int      // committed blob files
	orphans  []string // blobs no row refers to
	missing  []string // paths of live files whose blob is gone or short
	tmpFiles int      // leftovers of writers under tmp/
}

// checkLedger opens the database at dbURL (sqlite:// or postgres://) and
// walks root/objects, the local blob store's committed blobs.
func checkLedger(t testing.TB, dbURL, root string) ledger {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := model.OpenDB(ctx, model.DBOptions{URL: dbURL, MaxConns: 1})
	if err != nil {
		t.Fatalf("open database for the ledger: %v", err)
	}
	defer db.Close()
	var rows []struct {
		BlobKey string `bun:"blob_key"`
		Size    int64  `bun:"size"`
		Path    string `bun:"path"`
		Live    bool   `bun:"live"`
	}
	if err := db.NewRaw(`SELECT blob_key, size, path,
		(archived_at IS NULL AND status = 'completed') AS live FROM nodes WHERE blob_key <> ''`).Scan(ctx, &rows); err != nil {
		t.Fatalf("read nodes: %v", err)
	}
	var l ledger
	l.rows = len(rows)
	files := map[string]int64{}
	objects := filepath.Join(root, "objects")
	err = filepath.WalkDir(objects, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files[strings.ReplaceAll(d.Name(), "+", "/")] = fi.Size()
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("walk blobs: %v", err)
	}
	l.blobs = len(files)
	used := map[string]bool{}
	for _, r := range rows {
		used[r.BlobKey] = true
		if size, ok := files[r.BlobKey]; r.Live && (!ok || size != r.Size) {
			l.missing = append(l.missing, r.Path)
		}
	}
	for k := range files {
		if !used[k] {
			l.orphans = append(l.orphans, k)
		}
	}
	tmp, _ := os.ReadDir(filepath.Join(root, "tmp"))
	l.tmpFiles = len(tmp)
	return l
}

// ageBlobs sets the modification time of every file under the blob
// folder's objects/ and tmp/ an age into the past, so that the sweep
// (which spares anything younger than an hour, as it may belong to a write
// about to commit) treats the leftovers of this test as old.
func ageBlobs(t testing.TB, root string, age time.Duration) {
	t.Helper()
	old := time.Now().Add(-age)
	for _, dir := range []string{"objects", "tmp"} {
		filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if err := os.Chtimes(p, old, old); err != nil {
					t.Errorf("age %s: %v", p, err)
				}
			}
			return nil
		})
	}
}

// sweepNow runs the orphan sweep in-process over the database at dbURL
// and the local blob store at root, sparing nothing for its age: only for
// a store with no write in flight. It returns how many blobs it removed.
func sweepNow(t testing.TB, dbURL, root string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := model.OpenDB(ctx, model.DBOptions{URL: dbURL, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lb, err := localblob.New(root)
	if err != nil {
		t.Fatal(err)
	}
	n, err := model.NewStore(model.NewRepo(db), lb, nil).SweepOrphans(ctx, 0)
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	return n
}
