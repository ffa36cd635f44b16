package s3blob

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/filegate/filegate/model/blob"
	"github.com/filegate/filegate/model/blob/blobtest"
)

// rangeRecorder is a real HTTP proxy in front of the S3 server that
// records the Range header of every GET of an object under objects/.
type rangeRecorder struct {
	mu     sync.Mutex
	ranges []string
}

func (rr *rangeRecorder) take() []string {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	out := rr.ranges
	rr.ranges = nil
	return out
}

func recordRanges(t *testing.T, target string) (*rangeRecorder, string) {
	t.Helper()
	rr := &rangeRecorder{}
	return rr, proxyWith(t, target, func(_ http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/objects/") {
			rr.mu.Lock()
			rr.ranges = append(rr.ranges, r.Header.Get("Range"))
			rr.mu.Unlock()
		}
		return false
	})
}

// A read from the start asks for the whole object without a Range, so
// file-backed servers can send it with sendfile; reads from elsewhere ask
// for exactly what they need.
func TestWholeReadSendsNoRange(t *testing.T) {
	srv, cfg := testConfig(t)
	rr, endpoint := recordRanges(t, srv.Endpoint)
	cfg.Endpoint = endpoint
	s := open(t, cfg)
	data := blobtest.PatternBytes(9, 9<<20+17) // multipart
	put(t, s, "whole", bytes.NewReader(data))
	rr.take()

	r, err := s.Open(t.Context(), "whole")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("whole read: %d bytes, equal %v, err %v", len(got), bytes.Equal(got, data), err)
	}
	if rs := rr.take(); len(rs) != 1 || rs[0] != "" {
		t.Fatalf("whole read sent Range headers %q, want one GET without Range", rs)
	}

	if _, err := r.Seek(1000, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	tail, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(tail, data[1000:]) {
		t.Fatalf("read from 1000: %d bytes, err %v", len(tail), err)
	}
	buf := make([]byte, 10)
	if _, err := r.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, data[:10]) {
		t.Fatalf("ReadAt(0): %q, %v", buf, err)
	}
	if rs := rr.take(); len(rs) != 2 || rs[0] != "bytes=1000-" || rs[1] != "bytes=0-9" {
		t.Fatalf("partial reads sent Range headers %q, want bytes=1000- and bytes=0-9", rs)
	}
}

// A reader from OpenSized sends nothing until it is read and then reads
// the whole object with one GET, where Open asks with a HEAD first.
func TestSizedOpenSendsOneRequest(t *testing.T) {
	srv, cfg := testConfig(t)
	var mu sync.Mutex
	var sent []string
	cfg.Endpoint = proxyWith(t, srv.Endpoint, func(_ http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/objects/") {
			mu.Lock()
			sent = append(sent, strings.TrimSpace(r.Method+" "+r.Header.Get("Range")))
			mu.Unlock()
		}
		return false
	})
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := sent
		sent = nil
		return out
	}
	s := open(t, cfg)
	data := blobtest.PatternBytes(10, 9<<20+17)
	put(t, s, "whole", bytes.NewReader(data))
	take()

	rows := []struct {
		name       string
		open       func() (blob.Reader, error)
		beforeRead []string
		reading    []string
	}{
		{"Open", func() (blob.Reader, error) { return s.Open(t.Context(), "whole") }, []string{"HEAD"}, []string{"GET"}},
		{"OpenSized", func() (blob.Reader, error) { return s.OpenSized(t.Context(), "whole", int64(len(data))) }, nil, []string{"GET"}},
	}
	for _, row := range rows {
		r, err := row.open()
		if err != nil {
			t.Fatalf("%s: %v", row.name, err)
		}
		if got := take(); !slices.Equal(got, row.beforeRead) {
			t.Errorf("%s sent %q before the first read, want %q", row.name, got, row.beforeRead)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: read %d bytes, equal %v, err %v", row.name, len(got), bytes.Equal(got, data), err)
		}
		if got := take(); !slices.Equal(got, row.reading) {
			t.Errorf("%s sent %q to read the whole object, want %q", row.name, got, row.reading)
		}
	}
}
