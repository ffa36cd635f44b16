package faults

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/filegate/filegate/cmd/filegate/proctest"
)

// mountTmpfs mounts a tmpfs of the given size (such as "32m") in a temp
// folder and unmounts it when the test ends. Mounting needs root: without
// it the test is skipped, or fails under CI=true.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the disk-full tests mount a tmpfs and need root under CI")
		}
		t.Skip("the disk-full tests mount a tmpfs and need root")
	}
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v: %s", err, out)
		}
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a filler file into dir until the filesystem is full and
// returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return p
			}
			t.Fatal(err)
		}
	}
}

// TestFaultDiskFullBlobs fills the blob store's disk under a WebDAV PUT
// and a tus PATCH. Both get 507, the old content stays, nothing partial
// appears, reads keep working, and once space is freed the tus upload
// resumes to the bytes sent.
func TestFaultDiskFullBlobs(t *testing.T) {
	small := mountTmpfs(t, "32m")
	data := t.TempDir()
	blobs := filepath.Join(small, "blobs")
	in, c := start(t, proctest.Options{Data: data, BlobURL: "file://" + blobs}, "/disk")
	rel := reliability{suite: "disk-full-blobs"}
	old := randomBytes(10, 1<<20)
	if a := c.put("/disk/keep.bin", old); a.status != http.StatusCreated {
		t.Fatalf("PUT: %v", a)
	}
	up := randomBytes(11, 8<<20)
	loc, a := c.tusCreate("/disk", "tus.bin", int64(len(up)))
	if loc == "" {
		t.Fatalf("tus create: %v", a)
	}
	if _, a := c.tusPatch(loc, 0, up[:1<<20]); a.status != http.StatusNoContent {
		t.Fatalf("first PATCH: %v", a)
	}
	filler := fill(t, small)

	// A PUT over an existing file and one to a new name.
	for _, p := range []string{"/disk/keep.bin", "/disk/new.bin"} {
		rel.faults++
		if a := c.put(p, randomBytes(12, 4<<20)); a.status != http.StatusInsufficientStorage {
			t.Errorf("PUT %s on a full disk: %v, want 507", p, a)
			continue
		}
		rel.survived++
	}
	// A PATCH of the rest of the upload.
	rel.faults++
	if _, a := c.tusPatch(loc, 1<<20, up[1<<20:]); a.status != http.StatusInsufficientStorage {
		t.Errorf("PATCH on a full disk: %v, want 507", a)
	} else {
		rel.survived++
	}
	off := c.headRetry(t, loc)
	if off < 1<<20 {
		rel.bytesLost += 1<<20 - off
		t.Errorf("upload offset after the full disk is %d, below the %d bytes acknowledged", off, 1<<20)
	}
	// Reads go on, and show the old state.
	checkOld := func(when string) {
		if g := c.get("/disk/keep.bin"); g.status != http.StatusOK || g.sum != sum(old) {
			rel.bytesLost += int64(len(old))
			t.Errorf("%s: GET keep.bin: %d, %d bytes, old bytes=%v", when, g.status, g.size, g.sum == sum(old))
		}
		if g := c.get("/disk/new.bin"); g.status != http.StatusNotFound {
			t.Errorf("%s: GET new.bin: %d, want 404", when, g.status)
		}
		ls, a := c.list("/disk")
		if ls == nil {
			t.Fatalf("%s: PROPFIND: %v", when, a)
		}
		if len(ls) != 1 || ls["keep.bin"].size != int64(len(old)) {
			t.Errorf("%s: /disk lists %v, want keep.bin of %d bytes only", when, ls, len(old))
		}
		if a := c.do(http.MethodGet, "/api/v1/files", nil, 0, nil, true); a.status != http.StatusOK {
			t.Errorf("%s: API GET: %v", when, a)
		}
	}
	checkOld("disk full")

	// Free the space: the upload resumes and completes.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	checkOld("space freed")
	if _, err := c.tusFinish(loc, up, 2<<20, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if g := c.get("/disk/tus.bin"); g.status != http.StatusOK || g.sum != sum(up) {
		rel.bytesLost += int64(len(up))
		t.Errorf("resumed upload: GET %d, %d bytes, same bytes=%v", g.status, g.size, g.sum == sum(up))
	}
	next := randomBytes(13, 4<<20)
	if a := c.put("/disk/keep.bin", next); a.status != http.StatusNoContent {
		t.Errorf("PUT after space was freed: %v", a)
	}
	led := checkLedger(t, "sqlite://"+filepath.Join(data, "filegate.db"), blobs)
	if len(led.orphans) > 0 || len(led.missing) > 0 || led.tmpFiles > 0 {
		t.Errorf("ledger: orphans %v, live files without bytes %v, %d temp files left", led.orphans, led.missing, led.tmpFiles)
	}
	noInternalErrors(t, in)
	rel.extra = append(rel.extra, fmt.Sprintf("orphans=%d tmp_left=%d", len(led.orphans), led.tmpFiles))
	rel.log(t)
}

// TestFaultDiskFullDatabase fills the disk of the SQLite database while
// blobs have room. Writes get 507 or 503, never 500; reads keep working;
// freeing space makes writes work again, and every acknowledged file has
// its bytes.
func TestFaultDiskFullDatabase(t *testing.T) {
	small := mountTmpfs(t, "16m")
	data := filepath.Join(small, "data")
	blobs := filepath.Join(t.TempDir(), "blobs")
	in, c := start(t, proctest.Options{Data: data, BlobURL: "file://" + blobs}, "/db")
	rel := reliability{suite: "disk-full-db"}
	old := randomBytes(20, 64<<10)
	if a := c.put("/db/keep.bin", old); a.status != http.StatusCreated {
		t.Fatalf("PUT: %v", a)
	}
	filler := fill(t, small)
	acked := map[string][]byte{"/db/keep.bin": old}
	statuses := map[int]int{}
	refused := 0
	for i := range 40 {
		p := fmt.Sprintf("/db/f%d.bin", i)
		body := randomBytes(uint64(100+i), 16<<10)
		var a answer
		if i%2 == 0 {
			a = c.put(p, body)
		} else {
			a = c.mkcol(fmt.Sprintf("/db/d%d", i))
		}
		statuses[a.status]++
		switch {
		case a.status/100 == 2:
			if i%2 == 0 {
				acked[p] = body
			}
		case a.status == http.StatusInsufficientStorage,
			a.status == http.StatusServiceUnavailable && a.retryAfter != "":
			refused++
		default:
			t.Errorf("write %d on a full database disk: %v, want 2xx, 507 or 503 with Retry-After", i, a)
		}
	}
	rel.faults = refused
	// Reads are audited, and an access that cannot be recorded is
	// refused: 503, or 200 with the old bytes if the row still fit.
	g := c.get("/db/keep.bin")
	switch {
	case g.status == http.StatusOK && g.sum == sum(old):
	case g.status == http.StatusServiceUnavailable && g.retryAfter != "":
	default:
		t.Errorf("GET on a full database disk: %d, old bytes=%v", g.status, g.sum == sum(old))
	}
	rel.extra = append(rel.extra, fmt.Sprintf("read_status=%d", g.status))
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// Writes work again without a restart.
	var a answer
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if a = c.put("/db/after.bin", old); a.status == http.StatusCreated {
			break
		}
	}
	if a.status != http.StatusCreated {
		t.Fatalf("PUT after space was freed: %v", a)
	}
	ok := true
	for p, body := range acked {
		if g := c.get(p); g.status != http.StatusOK || g.sum != sum(body) {
			ok = false
			rel.bytesLost += int64(len(body))
			t.Errorf("%s was acknowledged: GET %d, same bytes=%v", p, g.status, g.sum == sum(body))
		}
	}
	if ok {
		rel.survived = rel.faults
	}
	led := checkLedger(t, "sqlite://"+filepath.Join(data, "filegate.db"), blobs)
	if len(led.orphans) > 0 || len(led.missing) > 0 {
		t.Errorf("ledger: orphans %v, live files without bytes %v", led.orphans, led.missing)
	}
	noInternalErrors(t, in)
	rel.extra = append(rel.extra, fmt.Sprintf("statuses=%v", statuses))
	rel.log(t)
}

// noInternalErrors fails t when the instance logged a request it answered
// (or would have answered, before the audit layer turned it into 503)
// with 500.
func noInternalErrors(t testing.TB, in *proctest.Instance) {
	t.Helper()
	for _, line := range strings.Split(in.Logs(), "\n") {
		if strings.Contains(line, `msg="webdav request failed"`) || strings.Contains(line, `msg="request failed"`) ||
			strings.Contains(line, "status=500") || strings.Contains(line, "InternalServerError") {
			t.Errorf("a request failed with an internal error: %s", line)
		}
	}
}
