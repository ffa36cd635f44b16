package faults

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/filegate/filegate/cmd/filegate/proctest"
)

// slowBody hands out data a chunk at a time with a pause before each, so
// that an upload is still streaming when the server is told to stop.
type slowBody struct {
	data  []byte
	off   int
	chunk int
	pause time.Duration
}

func (b *slowBody) Read(p []byte) (int, error) {
	if b.off >= len(b.data) {
		return 0, io.EOF
	}
	if b.off > 0 {
		time.Sleep(b.pause)
	}
	n := copy(p[:min(len(p), b.chunk)], b.data[b.off:])
	b.off += n
	return n, nil
}

// slowUpload is one upload streaming while the server stops.
type slowUpload struct {
	kind   string // "PUT" or "PATCH"
	path   string // the file's WebDAV path
	loc    string // the tus upload, for PATCH
	data   []byte
	status int
	err    error
}

// TestFaultSIGTERM sends SIGTERM while WebDAV PUTs and tus PATCHes
// stream. With a grace longer than the uploads, they all finish and the
// process exits cleanly; new requests meanwhile are refused (the listener
// is closed at once, so a new connection is refused; a request on an open
// keep-alive connection gets 503 "draining"). With a grace shorter than
// the uploads, the cut PUTs leave nothing behind and the cut tus uploads
// resume after a restart to the bytes sent.
func TestFaultSIGTERM(t *testing.T) {
	t.Run("grace", func(t *testing.T) { testSIGTERM(t, 30*time.Second, 4<<20) })
	t.Run("cut", func(t *testing.T) { testSIGTERM(t, time.Second, 8<<20) })
}

func testSIGTERM(t *testing.T, grace time.Duration, size int) {
	n := 2
	if long() {
		n = 6
	}
	in, c := start(t, proctest.Options{Args: []string{fmt.Sprintf("--shutdown-grace=%v", grace)}}, "/s")
	rel := reliability{suite: "sigterm-" + map[bool]string{true: "grace", false: "cut"}[grace > 5*time.Second]}
	old := randomBytes(40, 256<<10)
	var ups []*slowUpload
	for i := range n {
		p := fmt.Sprintf("/s/put-%d.bin", i)
		if i%2 == 1 { // half replace an existing file
			if a := c.put(p, old); a.status != http.StatusCreated {
				t.Fatalf("PUT: %v", a)
			}
		}
		ups = append(ups, &slowUpload{kind: "PUT", path: p, data: randomBytes(uint64(41+i), size)})
		name := fmt.Sprintf("tus-%d.bin", i)
		data := randomBytes(uint64(141+i), size)
		loc, a := c.tusCreate("/s", name, int64(size))
		if loc == "" {
			t.Fatalf("tus create: %v", a)
		}
		ups = append(ups, &slowUpload{kind: "PATCH", path: "/s/" + name, loc: loc, data: data})
	}
	// 64 KiB every 50 ms: a 4 MiB upload takes about 3 s.
	var wg sync.WaitGroup
	for _, u := range ups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := &slowBody{data: u.data, chunk: 64 << 10, pause: 50 * time.Millisecond}
			var a answer
			if u.kind == "PUT" {
				a = c.do(http.MethodPut, "/dav"+u.path, body, int64(len(u.data)), nil, true)
			} else {
				a = c.do(http.MethodPatch, u.loc, body, int64(len(u.data)), http.Header{
					"Tus-Resumable": {"1.0.0"}, "Upload-Offset": {"0"},
					"Content-Type": {"application/offset+octet-stream"},
				}, true)
			}
			u.status, u.err = a.status, a.err
		}()
	}
	time.Sleep(time.Second)
	rel.faults = len(ups)
	in.Signal(syscall.SIGTERM)

	// New requests while the uploads drain: a fresh connection each time,
	// once the server has started to drain (it logs that after it marks
	// itself draining; a probe sent before could rightly be served).
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(in.Logs(), `"shutting down"`); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no shutdown logged within 30s of SIGTERM:\n%s", in.Logs())
		}
	}
	probes := map[string]int{}
	for range 10 {
		fresh := &client{t: t, base: c.base, hc: &http.Client{Timeout: 10 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true}}}
		a := fresh.get("/s/put-1.bin")
		switch {
		case a.err != nil && errors.Is(a.err, syscall.ECONNREFUSED):
			probes["refused"]++
		case a.err != nil && (errors.Is(a.err, io.EOF) || errors.Is(a.err, syscall.ECONNRESET)):
			// Connected in the moment the listener closed: the kernel
			// had queued the connection and drops it unanswered with the
			// listener. Nothing was served, as with a refusal.
			probes["dropped"]++
		case a.status == http.StatusServiceUnavailable && a.retryAfter != "":
			probes["503"]++
		default:
			probes[a.String()]++
			t.Errorf("a new request during shutdown: %v, want 503 or a refused connection", a)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	exit := in.Wait(grace + 20*time.Second)
	t.Logf("new requests during shutdown: %v; exit: %v", probes, exit)

	finished := grace > 5*time.Second
	if finished {
		if exit != nil {
			t.Errorf("serve did not exit cleanly after the uploads drained: %v", exit)
		}
		for _, u := range ups {
			if u.err != nil || (u.status != http.StatusCreated && u.status != http.StatusNoContent) {
				t.Errorf("%s %s in flight at SIGTERM: %d %v, want it to finish within the grace", u.kind, u.path, u.status, u.err)
			}
		}
	}
	if err := in.Restart(); err != nil {
		t.Fatal(err)
	}
	cut := 0
	for i, u := range ups {
		ok := true
		done := u.err == nil && (u.status == http.StatusCreated || u.status == http.StatusNoContent)
		if !done {
			cut++
		}
		switch {
		case u.kind == "PATCH":
			if _, err := c.tusFinish(u.loc, u.data, 1<<20, time.Now().Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			if g := c.get(u.path); g.status != http.StatusOK || g.sum != sum(u.data) {
				ok = false
				rel.bytesLost += int64(len(u.data))
				t.Errorf("%s after the restart: %d, same bytes=%v", u.path, g.status, g.sum == sum(u.data))
			}
		case done:
			if g := c.get(u.path); g.status != http.StatusOK || g.sum != sum(u.data) {
				ok = false
				rel.bytesLost += int64(len(u.data))
				t.Errorf("%s was acknowledged: %d, same bytes=%v", u.path, g.status, g.sum == sum(u.data))
			}
		case i/2%2 == 1: // a cut PUT over an existing file
			if g := c.get(u.path); g.status != http.StatusOK || g.sum != sum(old) {
				ok = false
				t.Errorf("%s after a cut PUT: %d, old bytes=%v", u.path, g.status, g.sum == sum(old))
			}
		default:
			if g := c.get(u.path); g.status != http.StatusNotFound {
				ok = false
				t.Errorf("%s after a cut PUT to a new name: %d, want 404", u.path, g.status)
			}
		}
		if ok {
			rel.survived++
		}
	}
	if !finished && cut == 0 {
		t.Errorf("no upload was cut by a %v grace; the uploads are too fast to test it", grace)
	}
	noInternalErrors(t, in)
	rel.extra = append(rel.extra, fmt.Sprintf("grace=%v cut=%d refused=%d dropped=%d status503=%d", grace, cut, probes["refused"], probes["dropped"], probes["503"]))
	rel.log(t)
}
