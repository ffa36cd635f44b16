package faults

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/filegate/filegate/cmd/filegate/proctest"
)

// TestFaultDroppedConnectionTus cuts the PATCH connections of one tus
// upload at a random byte, again and again, resuming each time with HEAD
// and PATCH from the offset the server reports. The offset never goes
// back and the finished file has the bytes sent.
func TestFaultDroppedConnectionTus(t *testing.T) {
	cuts, size := 100, 6<<20
	if long() {
		cuts, size = 1000, 48<<20
	}
	in, c := start(t, proctest.Options{}, "/drops")
	data := randomBytes(1, size)
	loc, a := c.tusCreate("/drops", "upload.bin", int64(size))
	if loc == "" {
		t.Fatalf("create upload: %v", a)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	rel := reliability{suite: "drop-tus"}
	var lastOff int64
	var cut, resent int64
	for i := 0; i < cuts; i++ {
		off := c.headRetry(t, loc)
		if off < lastOff {
			rel.bytesLost += lastOff - off
			t.Errorf("cut %d: offset went back from %d to %d", i, lastOff, off)
		}
		lastOff = off
		if off == int64(size) {
			t.Fatalf("upload finished after %d of %d cuts; the cuts are too late", i, cuts)
		}
		// Cut within the next stretch, so that all cuts happen before
		// the end; sometimes at byte 0 of the body.
		rest := data[off:]
		span := min(len(rest)-1, 2*len(data)/(cuts+cuts/2))
		n := rnd.IntN(span + 1)
		rel.faults++
		err := c.rawRequest(http.MethodPatch, loc, http.Header{
			"Tus-Resumable": {"1.0.0"}, "Upload-Offset": {strconv.FormatInt(off, 10)},
			"Content-Type": {"application/offset+octet-stream"},
		}, rest, n, i%2 == 1)
		if err != nil {
			t.Fatalf("cut %d: %v", i, err)
		}
		cut += int64(n)
	}
	off := c.headRetry(t, loc)
	if off < lastOff {
		rel.bytesLost += lastOff - off
	}
	resent = cut - off // bytes the server dropped at the cuts; the client sends them again
	if _, err := c.tusFinish(loc, data, 1<<20, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	g := c.get("/drops/upload.bin")
	switch {
	case g.status != http.StatusOK:
		t.Fatalf("GET after upload: %v", g)
	case g.sum != sum(data):
		rel.bytesLost += int64(size)
		t.Errorf("finished upload differs from what was sent (%d bytes, want %d)", g.size, size)
	default:
		rel.survived = rel.faults
	}
	noInternalErrors(t, in)
	rel.extra = append(rel.extra, fmt.Sprintf("bytes_cut=%d bytes_resent=%d", cut, resent))
	rel.log(t)
}

// headRetry asks for an upload's offset, waiting out a 423 while the cut
// PATCH still holds the upload's lock.
func (c *client) headRetry(t testing.TB, loc string) int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		off, a := c.tusHead(loc)
		if a.err == nil && a.status == http.StatusOK {
			return off
		}
		if a.status >= 500 && a.status != http.StatusServiceUnavailable {
			t.Fatalf("HEAD %s: %v", loc, a)
		}
		if time.Now().After(deadline) {
			t.Fatalf("HEAD %s: %v", loc, a)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFaultDroppedConnectionDAV cuts WebDAV PUTs at a random byte, over
// an existing file and to a new name. The existing file keeps its old
// bytes and the new name never appears: no truncated file, ever.
func TestFaultDroppedConnectionDAV(t *testing.T) {
	cuts, size := 100, 2<<20
	if long() {
		cuts, size = 1000, 4<<20
	}
	in, c := start(t, proctest.Options{}, "/drops")
	old := randomBytes(2, size/2)
	if a := c.put("/drops/keep.bin", old); a.status != http.StatusCreated {
		t.Fatalf("PUT: %v", a)
	}
	next := randomBytes(3, size)
	rnd := rand.New(rand.NewPCG(3, 4))
	rel := reliability{suite: "drop-dav"}
	for i := 0; i < cuts; i++ {
		target := "/drops/keep.bin"
		if i%4 == 3 {
			target = fmt.Sprintf("/drops/new-%d.bin", i)
		}
		n := rnd.IntN(len(next)) // never the whole body
		rel.faults++
		if err := c.rawRequest(http.MethodPut, "/dav"+target, nil, next, n, i%2 == 1); err != nil {
			t.Fatalf("cut %d: %v", i, err)
		}
		ok := true
		if target == "/drops/keep.bin" {
			g := c.get(target)
			if g.status != http.StatusOK || g.sum != sum(old) {
				ok = false
				rel.bytesLost += int64(len(old))
				t.Errorf("cut %d at byte %d: GET keep.bin: status %d, %d bytes, old content intact=%v", i, n, g.status, g.size, g.sum == sum(old))
			}
		} else if g := c.get(target); g.status != http.StatusNotFound {
			ok = false
			t.Errorf("cut %d at byte %d: a cut PUT to a new name left %s visible: %d, %d bytes", i, n, target, g.status, g.size)
		}
		if ok {
			rel.survived++
		}
	}
	ls, a := c.list("/drops")
	if ls == nil {
		t.Fatalf("PROPFIND: %v", a)
	}
	if len(ls) != 1 || ls["keep.bin"].size != int64(len(old)) {
		t.Errorf("after the cuts /drops holds %v, want only keep.bin of %d bytes", ls, len(old))
	}
	// And the file can still be replaced whole.
	if a := c.put("/drops/keep.bin", next); a.status != http.StatusNoContent && a.status != http.StatusCreated {
		t.Fatalf("PUT after cuts: %v", a)
	}
	if g := c.get("/drops/keep.bin"); g.sum != sum(next) {
		t.Errorf("a whole PUT after the cuts did not stick")
	}
	noInternalErrors(t, in)
	rel.log(t)
}
