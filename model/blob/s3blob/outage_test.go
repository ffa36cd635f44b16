package s3blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/filegate/filegate/model/blob"
	"github.com/filegate/filegate/model/blob/blobtest"
	"github.com/filegate/filegate/model/blob/s3test"
)

// When the S3 server goes away every operation fails with
// blob.ErrUnavailable (not a hang, not a context deadline), and once it
// is back the acknowledged bytes of a partial upload are all there.
func TestOutageIsUnavailable(t *testing.T) {
	srv := s3test.StartT(t)
	bucket := srv.NewBucket(t)
	s3test.SetEnv(t)
	s := open(t, Config{
		Bucket: bucket, Prefix: "outage", Endpoint: srv.Endpoint, Region: s3test.Region, PathStyle: true,
		MaxAttempts: 2, MaxBackoff: 20 * time.Millisecond, DialTimeout: time.Second, ReadTimeout: 5 * time.Second,
	})
	ctx := t.Context()
	data := blobtest.PatternBytes(1, 3000)
	put(t, s, "before", bytes.NewReader(data))
	head := blobtest.PatternBytes(2, 6<<20+1)
	off := mustAppend(t, s, "up", 0, head)
	r, err := s.Open(ctx, "before")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	srv.Stop()
	// The bound is a safety net for the test, not a timing assertion:
	// a correct store answers long before it.
	octx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ops := []struct {
		name string
		run  func() error
	}{
		{"Stat", func() error { _, err := s.Stat(octx, "before"); return err }},
		{"Open", func() error { _, err := s.Open(octx, "before"); return err }},
		{"Read", func() error { _, err := io.ReadAll(r); return err }},
		{"ReadAt", func() error { _, err := r.ReadAt(make([]byte, 10), 5); return err }},
		{"Delete", func() error { return s.Delete(octx, "before") }},
		{"Copy", func() error { _, err := s.Copy(octx, "before", "after"); return err }},
		{"Walk", func() error { return s.Walk(octx, func(string, blob.Info) error { return nil }) }},
		{"Sweep", func() error { _, err := s.Sweep(octx, time.Now()); return err }},
		{"Commit small", func() error {
			w, err := s.Create(octx, "small")
			if err != nil {
				return err
			}
			defer w.Abort()
			w.Write(data)
			_, err = w.Commit(octx)
			return err
		}},
		{"Write large", func() error {
			w, err := s.Create(octx, "large")
			if err != nil {
				return err
			}
			defer w.Abort()
			if _, err := io.Copy(w, blobtest.Pattern(3, 40<<20)); err != nil {
				return err
			}
			_, err = w.Commit(octx)
			return err
		}},
		{"Append", func() error { _, err := s.Append(octx, "up", off, strings.NewReader("more"), nil); return err }},
		{"PartialSize", func() error { _, err := s.PartialSize(octx, "up"); return err }},
		{"Publish", func() error { _, err := s.Publish(octx, "up", "published"); return err }},
		{"Discard", func() error { return s.Discard(octx, "other") }},
		{"New", func() error {
			_, err := New(octx, Config{Bucket: bucket, Endpoint: srv.Endpoint, PathStyle: true, MaxAttempts: 2,
				MaxBackoff: 20 * time.Millisecond})
			return err
		}},
	}
	for _, op := range ops {
		err := op.run()
		if !errors.Is(err, blob.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s during an outage: err = %v, want blob.ErrUnavailable", op.name, err)
		}
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PartialSize(ctx, "up"); err != nil || n != off {
		t.Fatalf("PartialSize after the outage = %d, %v; want %d", n, err, off)
	}
	tail := []byte("tail")
	mustAppend(t, s, "up", off, tail)
	checkPublished(t, s, "up", "up", append(bytes.Clone(head), tail...))
}

// flakyProxy is a real HTTP proxy in front of the S3 server that answers
// 503 SlowDown whenever fail says so.
func flakyProxy(t *testing.T, target string, fail func(n int64) bool) string {
	t.Helper()
	var count atomic.Int64
	return proxyWith(t, target, func(w http.ResponseWriter, r *http.Request) bool {
		if !fail(count.Add(1)) {
			return false
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
		return true
	})
}

// proxyWith is a real HTTP proxy in front of the S3 server that shows
// every request to hook first; a request the hook answers (true) goes no
// further.
func proxyWith(t *testing.T, target string, hook func(w http.ResponseWriter, r *http.Request) bool) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hook(w, r) {
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// Throttling answers are retried until they pass; throttling that never
// ends is blob.ErrUnavailable.
func TestSlowDownIsRetried(t *testing.T) {
	srv, cfg := testConfig(t)
	cfg.MaxAttempts, cfg.MaxBackoff = 4, 10*time.Millisecond
	every := func(n int64) bool { return n%2 == 0 } // every other request
	cfg.Endpoint = flakyProxy(t, srv.Endpoint, every)
	s := open(t, cfg)
	data := blobtest.PatternBytes(5, 20<<20+3)
	put(t, s, "throttled", bytes.NewReader(data))
	off := mustAppend(t, s, "throttled-up", 0, data[:7<<20])
	mustAppend(t, s, "throttled-up", off, data[7<<20:])
	checkPublished(t, s, "throttled-up", "throttled-up", data)

	_, cfg2 := testConfig(t)
	cfg2.MaxAttempts, cfg2.MaxBackoff = 3, 10*time.Millisecond
	var down atomic.Bool
	cfg2.Endpoint = flakyProxy(t, srv.Endpoint, func(int64) bool { return down.Load() })
	s2 := open(t, cfg2)
	down.Store(true)
	_, err := s2.Stat(t.Context(), "anything")
	if !errors.Is(err, blob.ErrUnavailable) {
		t.Fatalf("Stat under endless SlowDown: err = %v, want ErrUnavailable", err)
	}
}
