package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/filegate/filegate/cmd/filegate/proctest"
	"github.com/filegate/filegate/davfs/davtest"
)

// TestServeLimitFlags checks that serve's limit flags reach the server:
// a short --read-header-timeout closes a slowloris connection, a short
// --body-idle-timeout ends a stalled upload with 408, and --max-ranges
// turns a longer Range list into the whole file.
func TestServeLimitFlags(t *testing.T) {
	inst := proctest.Start(t, proctest.Options{Args: []string{
		"--read-header-timeout=1s", "--body-idle-timeout=1s", "--max-ranges=2"}})
	addr := strings.TrimPrefix(inst.URL, "http://")
	do := func(method, path string, body []byte, hdr map[string]string) (int, []byte) {
		t.Helper()
		code, _, b := davtest.Do(t, method, inst.URL+path, bytes.NewReader(body), hdr,
			func(r *http.Request) { r.SetBasicAuth("admin", "secret-admin") })
		return code, []byte(b)
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		return c
	}

	t.Run("read-header-timeout", func(t *testing.T) {
		c := dial()
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		got, err := io.ReadAll(c)
		if err != nil || len(got) != 0 {
			t.Fatalf("slowloris connection: read %q, %v; want a close without an answer", got, err)
		}
	})

	t.Run("body-idle-timeout", func(t *testing.T) {
		c := dial()
		req, _ := http.NewRequest("PUT", "/dav/stalled.bin", nil)
		req.SetBasicAuth("admin", "secret-admin")
		fmt.Fprintf(c, "PUT /dav/stalled.bin HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Length: 100000\r\n\r\npartial",
			req.Header.Get("Authorization"))
		all, err := io.ReadAll(c)
		line := string(all)
		if !strings.HasPrefix(line, "HTTP/1.1 408") {
			t.Fatalf("stalled PUT: %q, %v; want 408", line, err)
		}
	})

	t.Run("max-ranges", func(t *testing.T) {
		content := bytes.Repeat([]byte("0123456789"), 100)
		if code, b := do("PUT", "/dav/ranged.txt", content, nil); code != 201 {
			t.Fatalf("PUT = %d %s", code, b)
		}
		if code, b := do("GET", "/dav/ranged.txt", nil, map[string]string{"Range": "bytes=0-1,10-11"}); code != 206 || bytes.Equal(b, content) {
			t.Fatalf("two ranges: %d, %d bytes; want 206", code, len(b))
		}
		if code, b := do("GET", "/dav/ranged.txt", nil, map[string]string{"Range": "bytes=0-1,10-11,20-21"}); code != 200 || !bytes.Equal(b, content) {
			t.Fatalf("three ranges: %d, %d bytes; want 200 with the whole file", code, len(b))
		}
	})
}
