package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/filegate/filegate/davfs/davtest"
	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
	"github.com/filegate/filegate/tus"
)

// limitsEnv is a real filegate server run by Server.Serve (so the
// http.Server limits apply) on 127.0.0.1, with every door mounted and an
// admin user "clerk".
type limitsEnv struct {
	t    *testing.T
	addr string
	base string // http:// or https:// origin
	srv  *gateway.Server
	// client speaks to base (HTTP/2 when the listener is TLS).
	client *http.Client
}

const clerkPW = "clerk-password-1"

// newLimitsEnv starts the server; tlsCfg, when set, wraps the listener in
// TLS. mount runs before serving, for extra handlers.
func newLimitsEnv(t *testing.T, cfg gateway.Config, tlsCfg *tls.Config, mount func(*gateway.Server)) *limitsEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db := dbtest.Open(t, dbtest.SQLite)
	env := newTestServer(t, db, "", cfg, nil)
	srv := env.srv
	if err := srv.MountAPI(gateway.APIConfig{}); err != nil {
		t.Fatal(err)
	}
	srv.HandleDoor(gateway.DAVPrefix+"/", srv.DAVHandler())
	door, err := srv.MountTus(ctx, tus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if mount != nil {
		mount(srv)
	}
	if _, err := env.repo.CreateUser(ctx, "clerk", clerkPW); err != nil {
		t.Fatal(err)
	}
	if err := env.authz.Apply(ctx, policy.Change{Add: [][]string{{"g", "user:clerk", "role:admin"}}}); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &limitsEnv{t: t, addr: l.Addr().String(), srv: srv, client: &http.Client{Timeout: time.Minute}}
	e.base = "http://" + e.addr
	if tlsCfg != nil {
		l = tls.NewListener(l, tlsCfg)
		e.base = "https://" + e.addr
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
		e.client.Transport = tr
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Error("server did not stop")
		}
		door.Close()
	})
	return e
}

// do sends an authenticated request over plain HTTP and returns status,
// headers, body; hdr are name, value pairs.
func (e *limitsEnv) do(method, path string, body io.Reader, hdr ...string) (int, http.Header, []byte) {
	e.t.Helper()
	h := map[string]string{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h[hdr[i]] = hdr[i+1]
	}
	code, header, b := davtest.Do(e.t, method, e.base+path, body, h, func(r *http.Request) { r.SetBasicAuth("clerk", clerkPW) })
	return code, header, []byte(b)
}

// dial opens a raw connection for clients net/http would not be.
func (e *limitsEnv) dial() net.Conn {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// authHeader is the clerk's Authorization header line for raw requests.
func authHeader() string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth("clerk", clerkPW)
	return "Authorization: " + req.Header.Get("Authorization") + "\r\n"
}

// waitClosed reads c until the server closes it and returns what it
// sent; it fails the test when nothing ends the connection within limit
// (a liveness bound, far above the configured timeouts).
func waitClosed(t *testing.T, c net.Conn, limit time.Duration) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(limit))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %v; it sent %q", limit, got)
	}
	return got
}

func TestSlowlorisHeadersAreCut(t *testing.T) {
	e := newLimitsEnv(t, gateway.Config{ReadHeaderTimeout: time.Second}, nil, nil)
	c := e.dial()
	start := time.Now()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	// One header byte every 100 ms, for as long as the server listens.
	var sent atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := c.Write([]byte("a")); err != nil {
				return
			}
			sent.Add(1)
		}
	}()
	got := waitClosed(t, c, 30*time.Second)
	held := time.Since(start)
	if len(got) != 0 {
		t.Fatalf("the server answered a request whose headers never ended: %q", got)
	}
	if sent.Load() == 0 {
		t.Fatal("the trickle never started; the test proves nothing")
	}
	t.Logf("slowloris connection (1 header byte / 100 ms, ReadHeaderTimeout 1s) closed after %v, %d bytes trickled", held.Round(time.Millisecond), sent.Load())

	// The server still answers everyone else.
	if code, _, _ := e.do("GET", "/healthz", nil); code != 200 {
		t.Fatalf("healthz after slowloris = %d", code)
	}
}

func TestHeaderBlockCap(t *testing.T) {
	e := newLimitsEnv(t, gateway.Config{}, nil, nil)
	for _, tt := range []struct {
		name   string
		size   int
		status string
	}{
		{"32 KiB header is accepted", 32 << 10, "HTTP/1.1 200"},
		{"200 KiB header gets 431", 200 << 10, "HTTP/1.1 431"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := e.dial()
			req := "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", tt.size) + "\r\nConnection: close\r\n\r\n"
			// The server may answer and close before it has read it all.
			go io.WriteString(c, req)
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, tt.status) {
				t.Fatalf("status line %q, %v; want %s", line, err, tt.status)
			}
		})
	}
}

func TestIdleKeepAliveIsClosed(t *testing.T) {
	e := newLimitsEnv(t, gateway.Config{IdleTimeout: time.Second}, nil, nil)
	c := e.dial()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("idle connection: read %q, %v; want a clean close", rest, err)
	}
	t.Logf("idle keep-alive connection closed after %v (IdleTimeout 1s)", time.Since(start).Round(time.Millisecond))
}

// stallBody sends a request with a declared body of total bytes, writes
// the first sent bytes, then stops (keeping the connection open) and
// returns what the server answers before it closes the connection.
func stallBody(t *testing.T, e *limitsEnv, method, path string, total, sent int, hdr string) (string, time.Duration) {
	t.Helper()
	c := e.dial()
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n%s\r\n", method, path, authHeader(), total, hdr)
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(bytes.Repeat([]byte("s"), sent)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got := waitClosed(t, c, 30*time.Second)
	return string(got), time.Since(start)
}

// outlast is a handler that reads its body (when it declares one, as
// handlers that expect none do not read), then works for longer than the
// body idle timeout, and answers whether its context survived.
func outlast(w http.ResponseWriter, r *http.Request) {
	var n int64
	if r.ContentLength != 0 {
		n, _ = io.Copy(io.Discard, r.Body)
	}
	time.Sleep(2500 * time.Millisecond)
	fmt.Fprintf(w, "read %d, context %v", n, r.Context().Err())
}

func TestStalledBodyIsCut(t *testing.T) {
	e := newLimitsEnv(t, gateway.Config{BodyIdleTimeout: time.Second}, nil, func(s *gateway.Server) {
		s.Handle("/outlast/", http.HandlerFunc(outlast))
	})

	t.Run("work that outlasts the timeout after the body keeps its context, and so does the connection", func(t *testing.T) {
		// The deadline must not outlive the body: net/http's background
		// read would time out and cancel the connection's context, and
		// every later request on it.
		for _, body := range []string{"", "small body", ""} {
			code, _, b := e.do("POST", "/outlast/x", strings.NewReader(body))
			if want := fmt.Sprintf("read %d, context <nil>", len(body)); code != 200 || string(b) != want {
				t.Fatalf("body %q: %d %q, want %q", body, code, b, want)
			}
		}
	})

	t.Run("a WebDAV PUT that stops sending is ended and stores nothing", func(t *testing.T) {
		answer, held := stallBody(t, e, "PUT", "/dav/stalled.bin", 1<<20, 10<<10, "")
		t.Logf("stalled PUT ended after %v (BodyIdleTimeout 1s); answer %q", held.Round(time.Millisecond), firstLine(answer))
		if !strings.HasPrefix(answer, "HTTP/1.1 408") {
			t.Fatalf("stalled PUT answered %q, want 408", firstLine(answer))
		}
		if code, _, _ := e.do("GET", "/dav/stalled.bin", nil); code != 404 {
			t.Fatalf("GET of the cut-off PUT = %d, want 404", code)
		}
	})

	t.Run("a files API upload that stops sending is ended and stores nothing", func(t *testing.T) {
		answer, _ := stallBody(t, e, "POST", "/api/v1/files?name=stalled-api.bin", 1<<20, 10<<10, "Content-Type: application/octet-stream\r\n")
		if !strings.HasPrefix(answer, "HTTP/1.1 408") {
			t.Fatalf("stalled API upload answered %q, want 408", firstLine(answer))
		}
		if code, _, _ := e.do("GET", "/dav/stalled-api.bin", nil); code != 404 {
			t.Fatalf("GET of the cut-off upload = %d, want 404", code)
		}
	})

	t.Run("a request refused before its body is read is answered and closed", func(t *testing.T) {
		// net/http drains a small unread body before it replies; a client
		// that never sends it must not hold the handler forever.
		answer, held := stallBody(t, e, "POST", "/api/v1/files", 4096, 10, "")
		t.Logf("refused request with a stalled body answered %q, closed after %v", firstLine(answer), held.Round(time.Millisecond))
		if !strings.HasPrefix(answer, "HTTP/1.1 400") {
			t.Fatalf("answer %q, want 400 (no name given)", firstLine(answer))
		}
	})

	t.Run("a slow body that keeps moving is not cut", func(t *testing.T) {
		// 12 bytes at one every 250 ms: three seconds in all, three times
		// the idle timeout, but never a second without progress.
		pr, pw := io.Pipe()
		go func() {
			for i := 0; i < 12; i++ {
				time.Sleep(250 * time.Millisecond)
				pw.Write([]byte{'a' + byte(i)})
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("PUT", e.base+"/dav/slow.txt", pr)
		req.SetBasicAuth("clerk", clerkPW)
		req.ContentLength = 12
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Fatalf("slow PUT = %d, want 201", resp.StatusCode)
		}
		if code, _, b := e.do("GET", "/dav/slow.txt", nil); code != 200 || string(b) != "abcdefghijkl" {
			t.Fatalf("slow PUT stored %d %q", code, b)
		}
	})
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

func TestStalledTusPatchKeepsItsBytes(t *testing.T) {
	e := newLimitsEnv(t, gateway.Config{BodyIdleTimeout: time.Second}, nil, nil)
	const total, first = 1 << 20, 100 << 10
	content := make([]byte, total)
	rand.Read(content)
	code, h, b := e.do("POST", gateway.TusPrefix, nil, "Tus-Resumable", "1.0.0",
		"Upload-Length", strconv.Itoa(total), "Upload-Metadata", tusMeta("stalled.bin", "/"))
	if code != 201 {
		t.Fatalf("create = %d %s", code, b)
	}
	loc := h.Get("Location")
	path := loc[strings.Index(loc, gateway.TusPrefix):]

	// A PATCH for everything that sends 100 KiB and then goes silent.
	c := e.dial()
	head := fmt.Sprintf("PATCH %s HTTP/1.1\r\nHost: x\r\n%sTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"+
		"Content-Type: application/offset+octet-stream\r\nContent-Length: %d\r\n\r\n", path, authHeader(), total)
	io.WriteString(c, head)
	if _, err := c.Write(content[:first]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	answer := waitClosed(t, c, 30*time.Second)
	t.Logf("stalled tus PATCH ended after %v; answer %q", time.Since(start).Round(time.Millisecond), firstLine(string(answer)))

	code, h, _ = e.do("HEAD", path, nil, "Tus-Resumable", "1.0.0")
	off, err := strconv.Atoi(h.Get("Upload-Offset"))
	if code != 200 || err != nil {
		t.Fatalf("HEAD = %d, offset %q", code, h.Get("Upload-Offset"))
	}
	// Every byte the server read was stored: the client wrote 100 KiB
	// and waited for the cut, so all of it arrived.
	if off != first {
		t.Fatalf("offset after the cut = %d, want the %d bytes sent", off, first)
	}
	code, _, b = e.do("PATCH", path, bytes.NewReader(content[off:]), "Tus-Resumable", "1.0.0",
		"Upload-Offset", strconv.Itoa(off), "Content-Type", "application/offset+octet-stream")
	if code != 204 {
		t.Fatalf("resume = %d %s", code, b)
	}
	code, _, got := e.do("GET", "/dav/stalled.bin", nil)
	if code != 200 || sha256.Sum256(got) != sha256.Sum256(content) {
		t.Fatalf("resumed file: %d, %d bytes, sha256 differs from the sent content", code, len(got))
	}
}

func TestTooManyRangesGetWholeFile(t *testing.T) {
	e := newLimitsEnv(t, gateway.Config{}, nil, nil)
	content := make([]byte, 64<<10)
	rand.Read(content)
	if code, _, b := e.do("PUT", "/dav/ranged.bin", bytes.NewReader(content)); code != 201 {
		t.Fatalf("PUT = %d %s", code, b)
	}
	code, _, b := e.do("GET", "/api/v1/files/first?name=ranged.bin", nil)
	var meta struct{ ID string }
	if code != 200 || json.Unmarshal(b, &meta) != nil || meta.ID == "" {
		t.Fatalf("findFirst = %d %s", code, b)
	}
	ranges := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf("%d-%d", i*100, i*100+9)
		}
		return "bytes=" + strings.Join(parts, ",")
	}
	for _, door := range []struct{ name, path string }{
		{"WebDAV", "/dav/ranged.bin"},
		{"files API", "/api/v1/files/" + meta.ID + "/content"},
	} {
		t.Run(door.name, func(t *testing.T) {
			code, h, b := e.do("GET", door.path, nil, "Range", "bytes=10-19")
			if code != 206 || !bytes.Equal(b, content[10:20]) {
				t.Fatalf("one range: %d, %d bytes", code, len(b))
			}
			code, h, b = e.do("GET", door.path, nil, "Range", ranges(gateway.DefaultMaxRanges))
			if code != 206 || !strings.HasPrefix(h.Get("Content-Type"), "multipart/byteranges") {
				t.Fatalf("%d ranges: %d %s", gateway.DefaultMaxRanges, code, h.Get("Content-Type"))
			}
			code, _, b = e.do("GET", door.path, nil, "Range", ranges(gateway.DefaultMaxRanges+1))
			if code != 200 || !bytes.Equal(b, content) {
				t.Fatalf("%d ranges: %d, %d bytes; want 200 with the whole file", gateway.DefaultMaxRanges+1, code, len(b))
			}
			code, _, b = e.do("GET", door.path, nil, "Range", ranges(1000))
			if code != 200 || !bytes.Equal(b, content) {
				t.Fatalf("1000 ranges: %d, %d bytes; want 200 with the whole file", code, len(b))
			}
		})
	}
}

// selfSigned makes a TLS server config for 127.0.0.1 offering h2.
func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "filegate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

// blocker is a handler that holds every request until released, ignoring
// cancellation as a slow handler would, and records how many ran at once.
type blocker struct {
	release chan struct{}
	mu      sync.Mutex
	active  int
	peak    int
	started int
}

func (b *blocker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.active++
	b.started++
	b.peak = max(b.peak, b.active)
	b.mu.Unlock()
	select {
	case <-b.release:
	case <-time.After(30 * time.Second):
	}
	b.mu.Lock()
	b.active--
	b.mu.Unlock()
}

func (b *blocker) stats() (peak, started int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak, b.started
}

// h2Conn opens a raw HTTP/2 connection and reads its frames in the
// background; goaway is closed when the server sends GOAWAY or closes.
func h2Conn(t *testing.T, addr string) (*http2.Framer, chan struct{}) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	goaway := make(chan struct{})
	go func() {
		defer close(goaway)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if _, ok := f.(*http2.GoAwayFrame); ok {
				return
			}
		}
	}()
	return fr, goaway
}

func h2Headers(path, authority string) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", authority}, {":path", path}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return buf.Bytes()
}

func TestHTTP2Bounds(t *testing.T) {
	const streams = 4
	blk := &blocker{release: make(chan struct{})}
	e := newLimitsEnv(t, gateway.Config{MaxConcurrentStreams: streams}, selfSigned(t), func(s *gateway.Server) {
		s.Handle("/block/", blk)
	})
	defer close(blk.release)

	t.Run("the server answers over h2", func(t *testing.T) {
		resp, err := e.client.Get(e.base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Fatalf("got %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
		}
	})

	t.Run("rapid reset runs no more handlers than MaxConcurrentStreams", func(t *testing.T) {
		fr, goaway := h2Conn(t, e.addr)
		block := h2Headers("/block/x", e.addr)
		sent := 0
		for id := uint32(1); id < 2*1000; id += 2 {
			err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true, EndStream: true})
			if err == nil {
				err = fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
			if err != nil {
				break
			}
			sent++
		}
		select {
		case <-goaway:
		case <-time.After(30 * time.Second):
			t.Fatal("the server kept a rapid-reset connection open")
		}
		peak, started := blk.stats()
		t.Logf("rapid reset: %d HEADERS+RST_STREAM pairs written, %d handlers started, peak %d at once, connection ended by the server",
			sent, started, peak)
		if peak > streams || peak == 0 {
			t.Fatalf("peak handlers on one connection = %d, want 1..%d", peak, streams)
		}
	})

	t.Run("a CONTINUATION flood ends the connection", func(t *testing.T) {
		fr, goaway := h2Conn(t, e.addr)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h2Headers("/healthz", e.addr)}); err != nil {
			t.Fatal(err)
		}
		// Literal headers of 8 KiB each, never ending the block.
		var buf bytes.Buffer
		hpack.NewEncoder(&buf).WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("f", 8<<10)})
		written := 0
		for written < 64<<20 {
			if fr.WriteContinuation(1, false, buf.Bytes()) != nil {
				break
			}
			written += buf.Len()
			select {
			case <-goaway:
				t.Logf("CONTINUATION flood: connection ended after %d KiB of header data", written>>10)
				return
			default:
			}
		}
		select {
		case <-goaway:
			t.Logf("CONTINUATION flood: connection ended after %d KiB of header data", written>>10)
		case <-time.After(30 * time.Second):
			t.Fatalf("the server read %d MiB of one header block and kept the connection", written>>20)
		}
	})

	t.Run("the server still answers after the floods", func(t *testing.T) {
		resp, err := e.client.Get(e.base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("healthz = %d", resp.StatusCode)
		}
	})
}
