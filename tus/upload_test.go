package tus_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/tus"
)

func TestChunkedUploadAppearsAtOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		e.mkdir("/scans")
		body := data(3<<20+17, 1)
		loc := e.create("alice", "/scans", "ct.dcm", int64(len(body)))
		for off := 0; off < len(body); off += 1 << 20 {
			end := min(off+1<<20, len(body))
			e.absent("/scans/ct.dcm")
			resp := e.patch("alice", loc, int64(off), body[off:end], nil)
			wantStatus(t, "PATCH", resp, 204)
			if got := resp.Header.Get("Upload-Offset"); got != strconv.Itoa(end) {
				t.Fatalf("Upload-Offset %s, want %d", got, end)
			}
			if resp.Header.Get("Upload-Expires") == "" {
				t.Fatal("PATCH answer lacks Upload-Expires")
			}
		}
		n, got := e.file("/scans/ct.dcm")
		if !bytes.Equal(got, body) || n.SHA256 != sum256(body) || n.Size != int64(len(body)) || n.Status != model.StatusCompleted {
			t.Fatalf("file: size %d sha %s status %s", n.Size, n.SHA256, n.Status)
		}
		if n.CreatorID != "uid-alice" {
			t.Fatalf("creator %q", n.CreatorID)
		}
		if off := e.offset("alice", loc); off != int64(len(body)) {
			t.Fatalf("HEAD after finish: offset %d", off)
		}
		if left := e.leftovers(); len(left) != 0 {
			t.Fatalf("leftovers: %v", left)
		}
	})
}

func TestCreationWithUploadAndMetadata(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		folder := e.mkdir("/in")
		ctx := context.Background()
		for _, tc := range []struct {
			name string
			size int
			meta string
		}{
			{"small.bin", 64 << 10, meta("filename", "small.bin", "folder", "/in", "tags", "ct,head", "title", "T", "phi", "true",
				"description", "line1\nline2", "source", "scanner-7", "filetype", "application/dicom")},
			{"big.bin", 3 << 20, meta("filename", "big.bin", "parentId", folder.ID)},
			{"empty.txt", 0, meta("filename", "empty.txt", "folder", "/in")},
		} {
			body := data(tc.size, 2)
			resp := e.req("alice", "POST", e.url(), map[string]string{
				"Upload-Length": strconv.Itoa(tc.size), "Upload-Metadata": tc.meta,
				"Content-Type": "application/offset+octet-stream"}, bytes.NewReader(body))
			wantStatus(t, tc.name, resp, 201)
			if resp.Header.Get("Upload-Offset") != strconv.Itoa(tc.size) || resp.Header.Get("Upload-Expires") == "" {
				t.Fatalf("%s: offset %q expires %q", tc.name, resp.Header.Get("Upload-Offset"), resp.Header.Get("Upload-Expires"))
			}
			n, got := e.file("/in/" + tc.name)
			if !bytes.Equal(got, body) || n.SHA256 != sum256(body) {
				t.Fatalf("%s: content differs", tc.name)
			}
		}
		n, err := e.store.Repo.LiveByPath(ctx, "/in/small.bin")
		if err != nil {
			t.Fatal(err)
		}
		if !n.PHI || n.Title != "T" || n.Source != "scanner-7" || n.Description != "line1\nline2" ||
			len(n.Tags) != 2 || n.MimeType != "application/dicom" {
			t.Fatalf("metadata not recorded: %+v", n)
		}
		// An upload over an existing file replaces its content, keeping its id.
		body := data(1000, 9)
		resp := e.req("alice", "POST", e.url(), map[string]string{
			"Upload-Length": "1000", "Upload-Metadata": meta("filename", "small.bin", "folder", "/in"),
			"Content-Type": "application/offset+octet-stream"}, bytes.NewReader(body))
		wantStatus(t, "replace", resp, 201)
		n2, got := e.file("/in/small.bin")
		if n2.ID != n.ID || !bytes.Equal(got, body) || n2.Version != n.Version+1 {
			t.Fatalf("replace: id %s→%s version %d→%d", n.ID, n2.ID, n.Version, n2.Version)
		}
	})
}

func TestZeroByteUpload(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		loc := e.create("alice", "/", "empty", 0)
		if loc == "" {
			t.Fatal("no Location")
		}
		n, got := e.file("/empty")
		if n.Size != 0 || len(got) != 0 || n.SHA256 != sum256(nil) {
			t.Fatalf("empty file: %+v", n)
		}
		// Deferred length, declared 0 at the end.
		resp := e.req("alice", "POST", e.url(), map[string]string{"Upload-Defer-Length": "1",
			"Upload-Metadata": meta("filename", "empty2")}, nil)
		wantStatus(t, "defer", resp, 201)
		resp = e.patch("alice", resp.Header.Get("Location"), 0, nil, map[string]string{"Upload-Length": "0"})
		wantStatus(t, "declare 0", resp, 204)
		e.file("/empty2")
	})
}

func TestDeferredLength(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{MaxSize: 5000})
		body := data(3000, 3)
		resp := e.req("alice", "POST", e.url(), map[string]string{"Upload-Defer-Length": "1",
			"Upload-Metadata": meta("filename", "d")}, nil)
		wantStatus(t, "create", resp, 201)
		loc := resp.Header.Get("Location")
		wantStatus(t, "first", e.patch("alice", loc, 0, body[:1000], nil), 204)
		wantStatus(t, "past max", e.patch("alice", loc, 1000, body[1000:2000], map[string]string{"Upload-Length": "6000"}), 400, 413)
		wantStatus(t, "declare", e.patch("alice", loc, 1000, body[1000:], map[string]string{"Upload-Length": "3000"}), 204)
		_, got := e.file("/d")
		if !bytes.Equal(got, body) {
			t.Fatal("content differs")
		}
	})
}

func TestTermination(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		loc := e.create("alice", "/", "gone", 100)
		wantStatus(t, "patch", e.patch("alice", loc, 0, data(40, 1), nil), 204)
		wantStatus(t, "delete", e.req("alice", "DELETE", loc, nil, nil), 204)
		if off := e.offset("alice", loc); off != -404 {
			t.Fatalf("HEAD after DELETE: %d", off)
		}
		wantStatus(t, "patch after delete", e.patch("alice", loc, 40, data(60, 1), nil), 404)
		e.absent("/gone")
		if left := e.leftovers(); len(left) != 0 {
			t.Fatalf("leftovers: %v", left)
		}
	})
}

func TestExpirationSweep(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{TTL: time.Hour})
		ctx := context.Background()
		stale := e.create("alice", "/", "stale", 100)
		resp := e.patch("alice", stale, 0, data(50, 1), nil)
		exp, err := http.ParseTime(resp.Header.Get("Upload-Expires"))
		if err != nil || exp.Before(time.Now().Add(59*time.Minute)) || exp.After(time.Now().Add(61*time.Minute)) {
			t.Fatalf("Upload-Expires %q: %v", resp.Header.Get("Upload-Expires"), err)
		}
		done := e.create("alice", "/", "done", 10)
		wantStatus(t, "finish", e.patch("alice", done, 0, data(10, 2), nil), 204)

		// Nothing has expired yet.
		if n, err := e.door.Sweep(ctx, time.Now()); err != nil || n != 0 {
			t.Fatalf("early sweep removed %d: %v", n, err)
		}
		n, err := e.door.Sweep(ctx, time.Now().Add(2*time.Hour))
		if err != nil || n != 2 {
			t.Fatalf("sweep removed %d, want 2: %v", n, err)
		}
		if off := e.offset("alice", stale); off != -404 {
			t.Fatalf("swept upload answers HEAD with %d", off)
		}
		if left := e.leftovers(); len(left) != 0 {
			t.Fatalf("bytes left after sweep: %v", left)
		}
		e.file("/done") // a finished file outlives its upload URL
	})
}

// TestConcurrentSmallUploads sends many creation-with-upload requests at
// once, as a phone syncing a folder of scans does: distinct names, and a
// few racing for one name. On SQLite their rows share group commits (each
// in its own savepoint), so one upload's failure must not touch another's.
// Every upload must answer 201 and its file hold exactly its bytes; the
// racers leave one live file whose content is one of theirs, at a version
// that counts every racer.
func TestConcurrentSmallUploads(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, "", tus.Config{})
		e.mkdir("/sync")
		const distinct, racers = 24, 6
		type sent struct {
			name string
			body []byte
		}
		var all []sent
		for i := range distinct {
			all = append(all, sent{fmt.Sprintf("scan-%02d.dcm", i), data(64<<10+i, byte(i))})
		}
		for i := range racers {
			all = append(all, sent{"shared.dcm", data(32<<10, byte(100+i))})
		}
		statuses := make([]int, len(all))
		errs := make([]error, len(all))
		var wg sync.WaitGroup
		for i, s := range all {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := http.NewRequest("POST", e.url(), bytes.NewReader(s.body))
				if err != nil {
					errs[i] = err
					return
				}
				r.SetBasicAuth("alice", "x")
				r.Header.Set("Tus-Resumable", "1.0.0")
				r.Header.Set("Upload-Length", strconv.Itoa(len(s.body)))
				r.Header.Set("Upload-Metadata", meta("filename", s.name, "folder", "/sync"))
				r.Header.Set("Content-Type", "application/offset+octet-stream")
				resp, err := http.DefaultClient.Do(r)
				if err != nil {
					errs[i] = err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			}()
		}
		wg.Wait()
		for i, s := range all {
			if errs[i] != nil || statuses[i] != 201 {
				t.Fatalf("upload %d (%s): status %d, err %v", i, s.name, statuses[i], errs[i])
			}
		}
		for _, s := range all[:distinct] {
			n, got := e.file("/sync/" + s.name)
			if !bytes.Equal(got, s.body) || n.SHA256 != sum256(s.body) || n.Size != int64(len(s.body)) {
				t.Fatalf("%s: content, size or SHA-256 differs from what was sent", s.name)
			}
		}
		n, got := e.file("/sync/shared.dcm")
		matched := false
		for _, s := range all[distinct:] {
			matched = matched || bytes.Equal(got, s.body) && n.SHA256 == sum256(s.body)
		}
		if !matched {
			t.Fatal("shared.dcm holds bytes none of the racers sent")
		}
		if n.Version != racers {
			t.Fatalf("shared.dcm is at version %d after %d uploads; want %d", n.Version, racers, racers)
		}
		if left := e.leftovers(); len(left) != 0 {
			t.Fatalf("leftover partial uploads: %v", left)
		}
	})
}
