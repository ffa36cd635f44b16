package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// basicAuth builds a Basic Authorization header value.
type basicAuth struct{ user, pass string }

func (b *basicAuth) header() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(b.user+":"+b.pass))
}

// tusClient speaks tus 1.0 (creation, creation-with-upload, checksum) to
// one endpoint.
type tusClient struct {
	endpoint string // .../uploads/
	folder   string
	auth     string
	chunk    int64
	checksum bool
	retries  int
	state    *uploadState
	out      io.Writer
	progress *progress
	roots    *x509.CertPool // nil: the system's
	hc       *http.Client
}

// statusError is an answer the client did not want.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string {
	msg := strings.TrimSpace(e.body)
	if len(msg) > 200 {
		msg = msg[:200]
	}
	if msg == "" {
		msg = http.StatusText(e.status)
	}
	return fmt.Sprintf("server answered %d: %s", e.status, msg)
}

// gone: the upload URL no longer exists (expired, or removed).
func gone(err error) bool {
	var se *statusError
	return errors.As(err, &se) && (se.status == http.StatusNotFound || se.status == http.StatusGone)
}

// retryable: a dropped connection, an overloaded or restarting server, a
// lock held by a request that has not noticed its client is gone, an
// offset that moved, a chunk damaged on the way.
func retryable(err error) bool {
	var se *statusError
	if !errors.As(err, &se) {
		return !errors.Is(err, context.Canceled)
	}
	switch se.status {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusLocked, http.StatusTooManyRequests, 460:
		return true
	}
	return se.status >= 500 && se.status != http.StatusNotImplemented && se.status != http.StatusInsufficientStorage
}

func (c *tusClient) client() *http.Client {
	if c.hc == nil {
		c.hc = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   15 * time.Second,
			ResponseHeaderTimeout: 2 * time.Minute,
			IdleConnTimeout:       90 * time.Second,
			WriteBufferSize:       256 << 10,
			ReadBufferSize:        64 << 10,
			ForceAttemptHTTP2:     true,
			TLSClientConfig:       &tls.Config{RootCAs: c.roots},
		}}
	}
	return c.hc
}

func (c *tusClient) do(ctx context.Context, method, u string, hdr map[string]string, body io.Reader, length int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", c.auth)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if body != nil {
		req.ContentLength = length
		if length == 0 {
			req.Body = http.NoBody
		}
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// finish reads the rest of an answer and checks its status.
func finish(resp *http.Response, want ...int) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	for _, w := range want {
		if resp.StatusCode == w {
			return nil
		}
	}
	return &statusError{status: resp.StatusCode, body: string(b)}
}

func offsetOf(resp *http.Response) (int64, error) {
	n, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("server sent no valid Upload-Offset (%q)", resp.Header.Get("Upload-Offset"))
	}
	return n, nil
}

// uploadFile sends one file, resuming an earlier attempt when the state
// file remembers one and the server still has it.
func (c *tusClient) uploadFile(ctx context.Context, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		return err
	}
	size, base := fi.Size(), filepath.Base(name)
	key := stateKey(abs, size, fi.ModTime(), c.endpoint, c.folder)
	loc, off := "", int64(-1)
	if e, ok := c.state.get(key); ok {
		loc = e.URL
	}
	c.progress.start(base, size)
	restarted, failures := false, 0
	for {
		switch {
		case loc == "":
			loc, off, err = c.create(ctx, f, base, size)
			if err == nil && off < size {
				err = c.state.set(key, loc)
			}
		case off < 0:
			off, err = c.head(ctx, loc, size)
			if err == nil {
				c.progress.resumed(off)
			}
		default:
			off, err = c.patch(ctx, f, loc, off, size)
		}
		if err == nil {
			failures = 0
			if loc != "" && off == size {
				break
			}
			continue
		}
		switch {
		case ctx.Err() != nil:
			c.progress.abort()
			return fmt.Errorf("interrupted; run the same command again to resume: %w", ctx.Err())
		case gone(err) && loc != "" && !restarted:
			// The server forgot the upload (it expired): start afresh.
			restarted = true
			c.state.set(key, "")
			loc, off = "", -1
			continue
		case !retryable(err):
			c.progress.abort()
			return err
		}
		failures++
		if failures > c.retries {
			c.progress.abort()
			return fmt.Errorf("giving up after %d attempts: %w", failures, err)
		}
		c.progress.note(fmt.Sprintf("retrying after: %v", err))
		if loc != "" {
			off = -1 // ask the server where to go on
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff(failures)):
		}
	}
	if err := c.state.set(key, ""); err != nil {
		c.progress.note(fmt.Sprintf("cannot update the state file: %v", err))
	}
	c.progress.done()
	fmt.Fprintf(c.out, "%s -> %s (%d bytes)\n", name, path.Join(c.folder, base), size)
	return nil
}

func backoff(n int) time.Duration {
	d := 500 * time.Millisecond << min(n-1, 6)
	return min(d, 30*time.Second)
}

// create starts the upload. A file that fits in one chunk travels in the
// creation request itself.
func (c *tusClient) create(ctx context.Context, f *os.File, name string, size int64) (string, int64, error) {
	hdr := map[string]string{
		"Upload-Length":   strconv.FormatInt(size, 10),
		"Upload-Metadata": "filename " + b64(name) + ",folder " + b64(c.folder),
	}
	var body io.Reader
	if size <= c.chunk {
		hdr["Content-Type"] = "application/offset+octet-stream"
		if c.checksum {
			sum, err := chunkSum(f, 0, size)
			if err != nil {
				return "", 0, err
			}
			hdr["Upload-Checksum"] = sum
		}
		body = c.progress.reader(io.NewSectionReader(f, 0, size))
	}
	resp, err := c.do(ctx, http.MethodPost, c.endpoint, hdr, body, size)
	if err != nil {
		return "", 0, err
	}
	loc := resp.Header.Get("Location")
	if err := finish(resp, http.StatusCreated); err != nil {
		return "", 0, err
	}
	if loc == "" {
		return "", 0, errors.New("server sent no Location for the new upload")
	}
	if u, err := url.Parse(c.endpoint); err == nil {
		if l, err := u.Parse(loc); err == nil {
			loc = l.String()
		}
	}
	off := int64(0)
	if body != nil {
		if off, err = offsetOf(resp); err != nil {
			return "", 0, err
		}
	}
	return loc, off, nil
}

// head asks where the upload stands.
func (c *tusClient) head(ctx context.Context, loc string, size int64) (int64, error) {
	resp, err := c.do(ctx, http.MethodHead, loc, nil, nil, 0)
	if err != nil {
		return 0, err
	}
	if err := finish(resp, http.StatusOK, http.StatusNoContent); err != nil {
		return 0, err
	}
	if l := resp.Header.Get("Upload-Length"); l != "" && l != strconv.FormatInt(size, 10) {
		return 0, &statusError{status: http.StatusGone, body: "the upload on the server has another length"}
	}
	return offsetOf(resp)
}

// patch sends the chunk at off.
func (c *tusClient) patch(ctx context.Context, f *os.File, loc string, off, size int64) (int64, error) {
	n := min(c.chunk, size-off)
	hdr := map[string]string{
		"Upload-Offset": strconv.FormatInt(off, 10),
		"Content-Type":  "application/offset+octet-stream",
	}
	if c.checksum {
		sum, err := chunkSum(f, off, n)
		if err != nil {
			return off, err
		}
		hdr["Upload-Checksum"] = sum
	}
	resp, err := c.do(ctx, http.MethodPatch, loc, hdr, c.progress.reader(io.NewSectionReader(f, off, n)), n)
	if err != nil {
		return off, err
	}
	if err := finish(resp, http.StatusNoContent); err != nil {
		return off, err
	}
	next, err := offsetOf(resp)
	if err != nil {
		return off, err
	}
	c.progress.resumed(next)
	return next, nil
}

func chunkSum(f *os.File, off, n int64) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, n)); err != nil {
		return "", err
	}
	return "sha256 " + base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
