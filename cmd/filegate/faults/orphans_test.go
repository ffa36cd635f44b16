package faults

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/filegate/filegate/cmd/filegate/proctest"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob/localblob"
)

// TestFaultOrphans makes orphans both ways on an instance over PostgreSQL
// and checks that no file is ever visible without its bytes and that the
// sweep (serve --sweep-interval) leaves no blob without a row:
//
//   - a PUT whose metadata commit fails because PostgreSQL stops after
//     the body arrived: 503, and the blob it wrote stays for the sweep
//     (the server cannot know whether the commit happened);
//   - a committed blob whose row was never written (the process died
//     between the two), made in-process through model.Store.WriteBlob;
//   - writers killed mid-body (SIGKILL during a PUT and a tus PATCH):
//     temp leftovers, and an upload row whose bytes are incomplete.
//
// The sweep spares anything younger than an hour, so the test ages the
// blob files before it restarts the instance; live blobs are aged too,
// and must survive.
func TestFaultOrphans(t *testing.T) {
	cl := startCluster(t)
	dbURL := cl.URL("postgres")
	data := t.TempDir()
	blobs := filepath.Join(data, "blobs")
	in, c := start(t, proctest.Options{Data: data, DatabaseURL: dbURL, Args: []string{"--sweep-interval=1s"}}, "/o")
	rel := reliability{suite: "orphans"}
	keep := map[string][]byte{"/o/a.bin": randomBytes(30, 256<<10), "/o/b.bin": randomBytes(31, 1<<20)}
	for p, b := range keep {
		if a := c.put(p, b); a.status != http.StatusCreated {
			t.Fatalf("PUT %s: %v", p, a)
		}
	}

	// 1. The metadata commit fails after the blob is written.
	rel.faults++
	body := randomBytes(32, 2<<20)
	conn, err := c.openRaw(http.MethodPut, "/dav/o/c.bin", nil, int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(body[:len(body)-1]); err != nil {
		t.Fatal(err)
	}
	cl.Stop()
	conn.Write(body[len(body)-1:])
	status, err := readStatus(conn)
	conn.Close()
	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}
	// The commit's outcome is unknown to the server (the database went
	// away under it), so it keeps the blob for the sweep to judge.
	led := checkLedger(t, dbURL, blobs)
	switch {
	case err != nil:
		t.Errorf("PUT with the database gone: %v", err)
	case status != http.StatusServiceUnavailable:
		t.Errorf("PUT with the database gone: %d, want 503", status)
	case len(led.orphans) > 1 || len(led.missing) > 0:
		t.Errorf("the failed commit left blobs without a row %v, files without bytes %v", led.orphans, led.missing)
	default:
		rel.survived++
	}
	keptForSweep := len(led.orphans)
	waitReady(t, c)

	// 2. Writers killed mid-body: a PUT to a new name, and a PATCH of an
	// upload that already holds a MiB.
	up := randomBytes(33, 3<<20)
	loc, a := c.tusCreate("/o", "tus.bin", int64(len(up)))
	if loc == "" {
		t.Fatalf("tus create: %v", a)
	}
	if _, a := c.tusPatch(loc, 0, up[:1<<20]); a.status != http.StatusNoContent {
		t.Fatalf("PATCH: %v", a)
	}
	put, err := c.openRaw(http.MethodPut, "/dav/o/d.bin", nil, int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	put.Write(body[:len(body)/2])
	patch, err := c.openRaw(http.MethodPatch, loc, http.Header{
		"Tus-Resumable": {"1.0.0"}, "Upload-Offset": {strconv.Itoa(1 << 20)},
		"Content-Type": {"application/offset+octet-stream"},
	}, int64(len(up)-1<<20))
	if err != nil {
		t.Fatal(err)
	}
	patch.Write(up[1<<20 : 2<<20])
	time.Sleep(300 * time.Millisecond) // let the server write what arrived
	in.Kill()
	put.Close()
	patch.Close()
	rel.faults += 2

	// 3. A committed blob that no row refers to, as a process that died
	// between the blob and the row leaves it; and a temp file of a writer
	// that died before Commit.
	ctx := context.Background()
	db, err := model.OpenDB(ctx, model.DBOptions{URL: dbURL, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	lb, err := localblob.New(blobs)
	if err != nil {
		t.Fatal(err)
	}
	store := model.NewStore(model.NewRepo(db), lb, nil)
	orphan, _, err := store.WriteBlob(ctx, "orphan.bin", bytes.NewReader(randomBytes(34, 512<<10)), 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := lb.Create(ctx, model.NewID())
	if err != nil {
		t.Fatal(err)
	}
	w.Write(randomBytes(35, 128<<10)) // never committed nor aborted
	db.Close()
	rel.faults += 2

	before := checkLedger(t, dbURL, blobs)
	if len(before.orphans) != 1+keptForSweep || !slices.Contains(before.orphans, orphan.BlobKey) || before.tmpFiles == 0 {
		t.Fatalf("before the sweep: orphans %v (want %s and %d kept for the sweep), %d temp files (want some)",
			before.orphans, orphan.BlobKey, keptForSweep, before.tmpFiles)
	}
	ageBlobs(t, blobs, 2*time.Hour)
	if err := in.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		led = checkLedger(t, dbURL, blobs)
		if len(led.orphans) == 0 && led.tmpFiles == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after the restart the sweep left orphans %v and %d temp files\n%s", led.orphans, led.tmpFiles, in.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(in.Logs(), "orphan sweep") {
		t.Errorf("the sweep did not log what it removed")
	}
	rel.survived += 2 // the committed orphan and the temp file are gone

	// No file is visible without its bytes: the live ones are intact,
	// the killed PUT and the failed commit never appear, and the killed
	// upload resumes to its bytes.
	if len(led.missing) > 0 {
		t.Errorf("live files without their bytes: %v", led.missing)
	}
	for p, b := range keep {
		if g := c.get(p); g.status != http.StatusOK || g.sum != sum(b) {
			rel.bytesLost += int64(len(b))
			t.Errorf("%s after the sweep: %d, same bytes=%v", p, g.status, g.sum == sum(b))
		}
	}
	ls, la := c.list("/o")
	if ls == nil {
		t.Fatalf("PROPFIND: %v", la)
	}
	if len(ls) != 2 || ls["a.bin"].size != int64(len(keep["/o/a.bin"])) || ls["b.bin"].size != int64(len(keep["/o/b.bin"])) {
		t.Errorf("/o lists %v, want a.bin and b.bin only", ls)
	} else {
		rel.survived++ // the killed PUT
	}
	off := c.headRetry(t, loc)
	if off < 1<<20 {
		rel.bytesLost += 1<<20 - off
		t.Errorf("the killed upload is at %d, below the %d bytes acknowledged", off, 1<<20)
	}
	if _, err := c.tusFinish(loc, up, 1<<20, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if g := c.get("/o/tus.bin"); g.status != http.StatusOK || g.sum != sum(up) {
		rel.bytesLost += int64(len(up))
		t.Errorf("resumed upload: %d, same bytes=%v", g.status, g.sum == sum(up))
	} else {
		rel.survived++
	}
	led = checkLedger(t, dbURL, blobs)
	if len(led.orphans) > 0 || len(led.missing) > 0 {
		t.Errorf("final ledger: orphans %v, live files without bytes %v", led.orphans, led.missing)
	}

	// A blob lost behind the server's back (a disk error, an operator's
	// rm) is damage, not a file that does not exist: the GET answers the
	// deliberate 500 "damaged" (never wrong bytes, never a 404 for a file
	// the listing shows) and the server logs the path. Every other request
	// of the run was free of internal errors.
	noInternalErrors(t, in)
	rm := filepath.Join(blobs, "objects")
	var lost string
	filepath.Walk(rm, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && fi.Size() == int64(len(keep["/o/a.bin"])) {
			lost = p
		}
		return nil
	})
	if lost == "" {
		t.Fatal("a.bin's blob not found")
	}
	os.Remove(lost)
	g := c.get("/o/a.bin")
	if g.status != http.StatusInternalServerError {
		t.Errorf("GET of a file whose blob is lost: %d, want 500 (damaged)", g.status)
	}
	if !strings.Contains(in.Logs(), "stored bytes missing") || !strings.Contains(in.Logs(), "/o/a.bin") {
		t.Errorf("the lost blob of /o/a.bin was not logged as damage")
	}
	rel.extra = append(rel.extra, fmt.Sprintf("rows=%d blobs=%d kept_for_sweep=%d lost_blob_get=%d", led.rows, led.blobs, keptForSweep, g.status))
	rel.log(t)
}

// waitReady waits until /readyz answers 200.
func waitReady(t testing.TB, c *client) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		a := c.do(http.MethodGet, "/readyz", nil, 0, nil, true)
		if a.status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", a)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
