package tus_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
	xslog "golang.org/x/exp/slog"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/tus"
)

// These benchmarks measure the door against tusd v2.10.1 with its
// filestore, both over loopback HTTP and driven by one client (keep-alive,
// 256 KiB buffers), as the bench harness does:
//
//	go test -run '^$' -bench . -benchtime 1x ./tus/
//
// The figures are throughput of the whole request path; the door fsyncs
// every finished file before it appears, tusd fsyncs nothing.

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, WriteBufferSize: 256 << 10, ReadBufferSize: 64 << 10}}
}

// patternBuf fills bodies; copying it keeps the client's share of the
// two cores small.
var patternBuf = func() (b [64 << 10]byte) {
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return
}()

// pattern is an endless body that costs no allocation.
type pattern struct{ n, left int64 }

func (p *pattern) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	k := int(min(int64(len(b)), p.left))
	for i := 0; i < k; i += len(patternBuf) {
		copy(b[i:k], patternBuf[:])
	}
	p.n += int64(k)
	p.left -= int64(k)
	return k, nil
}

type benchTarget struct {
	base string // .../uploads/
	auth bool
}

func doReq(c *http.Client, t benchTarget, method, url string, hdr map[string]string, body io.Reader, n int64) (*http.Response, error) {
	r, _ := http.NewRequest(method, url, body)
	if body != nil {
		r.ContentLength = n
	}
	if t.auth {
		r.SetBasicAuth("alice", "x")
	}
	r.Header.Set("Tus-Resumable", "1.0.0")
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	resp, err := c.Do(r)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

func uploadOnce(c *http.Client, t benchTarget, name string, size, chunk int64, withBody bool) error {
	hdr := map[string]string{"Upload-Length": strconv.FormatInt(size, 10), "Upload-Metadata": meta("filename", name, "filetype", "application/octet-stream")}
	var body io.Reader
	var off int64
	if withBody {
		hdr["Content-Type"] = "application/offset+octet-stream"
		body = &pattern{left: min(size, chunk)}
	}
	resp, err := doReq(c, t, "POST", t.base, hdr, body, min(size, chunk))
	if err != nil {
		return err
	}
	if resp.StatusCode != 201 {
		return fmt.Errorf("POST: %s", resp.Status)
	}
	loc := resp.Header.Get("Location")
	if withBody {
		off, _ = strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	}
	for off < size {
		n := min(chunk, size-off)
		resp, err := doReq(c, t, "PATCH", loc, map[string]string{"Upload-Offset": strconv.FormatInt(off, 10),
			"Content-Type": "application/offset+octet-stream"}, &pattern{n: off, left: n}, n)
		if err != nil {
			return err
		}
		if resp.StatusCode != 204 {
			return fmt.Errorf("PATCH: %s", resp.Status)
		}
		off += n
	}
	return nil
}

func doorTarget(b *testing.B, kind dbtest.Kind) benchTarget {
	e := newEnv(b, dbtest.Open(b, kind), "", tus.Config{})
	return benchTarget{base: e.url(), auth: true}
}

func tusdTarget(b *testing.B) benchTarget {
	store := filestore.New(b.TempDir())
	composer := handler.NewStoreComposer()
	store.UseIn(composer)
	memorylocker.New().UseIn(composer)
	h, err := handler.NewHandler(handler.Config{BasePath: "/files/", StoreComposer: composer,
		Logger: xslog.New(xslog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/files/", http.StripPrefix("/files/", h))
	srv := httptest.NewServer(mux)
	b.Cleanup(srv.Close)
	return benchTarget{base: srv.URL + "/files/"}
}

func benchBig(b *testing.B, t benchTarget) {
	const size, chunk = 1 << 30, 8 << 20
	c := benchClient()
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := uploadOnce(c, t, fmt.Sprintf("big-%d-%d.bin", i, time.Now().UnixNano()), size, chunk, false); err != nil {
			b.Fatal(err)
		}
	}
}

func benchSmall(b *testing.B, t benchTarget) {
	const n, size, workers = 200, 64 << 10, 8
	c := benchClient()
	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		t0 := time.Now()
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					k := next.Add(1)
					if k > n {
						return
					}
					if err := uploadOnce(c, t, fmt.Sprintf("s-%d-%d.bin", i, k), size, size, true); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		total += time.Since(t0)
		select {
		case err := <-errs:
			b.Fatal(err)
		default:
		}
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "uploads/s")
}

func BenchmarkBigUpload(b *testing.B) {
	b.Run("tusd-filestore", func(b *testing.B) { benchBig(b, tusdTarget(b)) })
	for _, kind := range dbtest.Kinds {
		b.Run("door-"+string(kind), func(b *testing.B) { benchBig(b, doorTarget(b, kind)) })
	}
}

func BenchmarkSmallUploads(b *testing.B) {
	b.Run("tusd-filestore", func(b *testing.B) { benchSmall(b, tusdTarget(b)) })
	for _, kind := range dbtest.Kinds {
		b.Run("door-"+string(kind), func(b *testing.B) { benchSmall(b, doorTarget(b, kind)) })
	}
}
