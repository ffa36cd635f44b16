package model_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/filegate/filegate/migrations"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob/localblob"
	"github.com/filegate/filegate/model/dbtest"
)

// openBackup opens a backup folder the way serve opens a data folder.
func openBackup(t *testing.T, dir string) *model.Store {
	t.Helper()
	db, err := model.OpenDB(context.Background(), model.DBOptions{URL: "sqlite://" + filepath.Join(dir, model.BackupDatabase)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	blobs, err := localblob.New(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	return model.NewStore(model.NewRepo(db), blobs, nil)
}

// content reads a live file's bytes from s.
func content(t *testing.T, s *model.Store, path string) []byte {
	t.Helper()
	ctx := context.Background()
	n, err := s.Repo.LiveByPath(ctx, path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	r, err := s.Open(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// healthy checks a backup with Check and returns how many files it holds.
func healthy(t *testing.T, s *model.Store) int64 {
	t.Helper()
	rep, probs := check(t, s, model.CheckOptions{})
	if len(probs) != 0 {
		t.Fatalf("the backup is damaged: %+v", probs)
	}
	return rep.Files
}

// A backup is a data folder holding a snapshot of the database and every
// file's bytes, verified as they are copied; a second run to the same
// folder copies only what is new and drops what is gone. Sources: the
// local folder and S3.
func TestBackupIsAConsistentDataFolder(t *testing.T) {
	eachStore(t, func(t *testing.T, s *model.Store) {
		if model.IsPostgres(s.Repo.DB()) {
			_, err := s.Backup(context.Background(), t.TempDir(), model.BackupOptions{})
			if !errors.Is(err, model.ErrInvalid) {
				t.Fatalf("PostgreSQL: %v, want ErrInvalid (pg_dump is the tool)", err)
			}
			return
		}
		ctx := context.Background()
		big := pattern(3<<20+5, 7)
		putFile(t, s, "/a/x.txt", []byte("first"))
		putFile(t, s, "/a/big.bin", big)
		y := putFile(t, s, "/b/y.dcm", pattern(9000, 2))
		z := putFile(t, s, "/old/z.pdf", pattern(100, 3))
		if _, err := s.Repo.Archive(ctx, z.ID); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		rep, err := s.Backup(ctx, dir, model.BackupOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Files != 4 || rep.Copied != 4 || rep.Kept != 0 || rep.Removed != 0 || rep.Snapshots != 1 ||
			rep.Bytes != int64(5+len(big)+9000+100) {
			t.Fatalf("first backup: %+v", rep)
		}
		b := openBackup(t, dir)
		if n := healthy(t, b); n != 4 {
			t.Fatalf("the backup holds %d files, want 4", n)
		}
		if !bytes.Equal(content(t, b, "/a/big.bin"), big) {
			t.Fatal("big.bin differs in the backup")
		}

		// Replace one file, purge one, add one: the second run copies the
		// two new blobs and drops the two that no file needs.
		putFile(t, s, "/a/x.txt", []byte("second"))
		if err := s.Purge(ctx, y.ID); err != nil {
			t.Fatal(err)
		}
		putFile(t, s, "/c/new.txt", []byte("new"))
		rep, err = s.Backup(ctx, dir, model.BackupOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Files != 4 || rep.Copied != 2 || rep.Removed != 2 || rep.Bytes != int64(len("second")+len("new")) {
			t.Fatalf("second backup: %+v", rep)
		}
		b = openBackup(t, dir)
		if n := healthy(t, b); n != 4 {
			t.Fatalf("the backup holds %d files, want 4", n)
		}
		if got := string(content(t, b, "/a/x.txt")); got != "second" {
			t.Fatalf("x.txt in the backup: %q", got)
		}
		if _, err := b.Repo.LiveByPath(ctx, "/b/y.dcm"); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("the purged file is in the backup: %v", err)
		}
	})
}

// A file replaced after the snapshot was taken (its old bytes deleted at
// once) makes the backup take the snapshot again, so that what it holds
// is the database as it was at one moment, with all its bytes. (A file
// whose old bytes were already copied needs no new snapshot: the backup
// holds it as the snapshot saw it.)
func TestBackupRetakesAStaleSnapshot(t *testing.T) {
	db := dbtest.Open(t, dbtest.SQLite)
	s := localStore(t, db)
	putFile(t, s, "/other.txt", []byte("other"))
	snapshots := 0
	o := model.WithSnapshotHooks(model.BackupOptions{},
		func() {
			if snapshots == 0 { // written after the first copy pass
				putFile(t, s, "/scan.dcm", []byte("version 1"))
			}
		},
		func() {
			snapshots++
			if snapshots == 1 { // replaced before its bytes were copied
				putFile(t, s, "/scan.dcm", []byte("version 2"))
			}
		})
	dir := t.TempDir()
	rep, err := s.Backup(context.Background(), dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Snapshots != 2 || rep.Files != 2 {
		t.Fatalf("report %+v, want 2 snapshots", rep)
	}
	b := openBackup(t, dir)
	healthy(t, b)
	if got := string(content(t, b, "/scan.dcm")); got != "version 2" {
		t.Fatalf("scan.dcm in the backup: %q", got)
	}
}

// Bytes that no longer match their record are not copied: the backup
// stops, names the file, and the folder keeps its previous snapshot.
// (Run filegate check to find every such file.)
func TestBackupRefusesDamagedBytes(t *testing.T) {
	db := dbtest.Open(t, dbtest.SQLite)
	s := localStore(t, db)
	putFile(t, s, "/ecg.xml", pattern(4000, 1))
	dir := t.TempDir()
	if _, err := s.Backup(context.Background(), dir, model.BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	// Bytes already in the backup are not read again; new ones are.
	later := putFile(t, s, "/later.txt", pattern(500, 1))
	overwriteBlob(t, s, later.BlobKey, pattern(500, 2))
	_, err := s.Backup(context.Background(), dir, model.BackupOptions{})
	if !errors.Is(err, model.ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte("/later.txt")) {
		t.Fatalf("backup of damaged bytes: %v", err)
	}
	b := openBackup(t, dir)
	if n := healthy(t, b); n != 1 {
		t.Fatalf("the previous backup holds %d files, want 1", n)
	}
	if !bytes.Equal(content(t, b, "/ecg.xml"), pattern(4000, 1)) {
		t.Fatal("the previous backup lost the good bytes")
	}
}

// A backup into the data folder itself, or into or around the blob
// folder, is refused before anything is written.
func TestBackupRefusesTheDataFolder(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	db, err := model.OpenDB(ctx, model.DBOptions{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := migrations.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	blobs, err := localblob.New(filepath.Join(data, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	s := model.NewStore(model.NewRepo(db), blobs, nil)
	putFile(t, s, "/f.txt", []byte("f"))
	for _, dir := range []string{data, data + "/", filepath.Join(data, "blobs"), filepath.Join(data, "blobs", "objects", "bk")} {
		if _, err := s.Backup(ctx, dir, model.BackupOptions{}); !errors.Is(err, model.ErrInvalid) {
			t.Fatalf("backup into %s: %v, want ErrInvalid", dir, err)
		}
	}
	if _, err := os.Stat(filepath.Join(data, model.BackupDatabase+".new")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused backup left a snapshot: %v", err)
	}
	if n := healthy(t, s); n != 1 {
		t.Fatalf("the store holds %d files after the refusals", n)
	}
}
