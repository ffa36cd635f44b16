package faults

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/filegate/filegate/cmd/filegate/proctest"
)

// long reports whether the long (make chaos) versions run.
func long() bool { return os.Getenv("FILEGATE_CHAOS") == "long" }

const adminPassword = "secret-admin"

// client speaks the three doors of one instance as the admin user.
type client struct {
	t    testing.TB
	base string // http://127.0.0.1:PORT
	hc   *http.Client
}

func newClient(t testing.TB, in *proctest.Instance) *client {
	return &client{t: t, base: in.URL, hc: &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true},
	}}
}

// answer is what one request got: a status (0 when the connection
// failed), the Retry-After header and the body's SHA-256 for GETs.
type answer struct {
	status     int
	retryAfter string
	sum        string
	size       int64
	header     http.Header
	body       []byte // only for small answers that are read (PROPFIND, tus)
	err        error
}

func (a answer) String() string {
	if a.err != nil {
		return "error: " + a.err.Error()
	}
	return fmt.Sprintf("%d %s", a.status, strings.TrimSpace(string(a.body)))
}

// do sends one request. keep says whether to keep the body (small
// answers); otherwise the body is hashed and dropped.
func (c *client) do(method, p string, body io.Reader, size int64, hdr http.Header, keep bool) answer {
	req, err := http.NewRequest(method, c.base+p, body)
	if err != nil {
		return answer{err: err}
	}
	if body != nil {
		req.ContentLength = size
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.SetBasicAuth("admin", adminPassword)
	resp, err := c.hc.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), header: resp.Header}
	if keep {
		a.body, a.err = io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		return a
	}
	h := sha256.New()
	a.size, a.err = io.Copy(h, resp.Body)
	a.sum = hex.EncodeToString(h.Sum(nil))
	return a
}

func (c *client) put(p string, data []byte) answer {
	return c.do(http.MethodPut, "/dav"+p, bytes.NewReader(data), int64(len(data)), nil, true)
}

func (c *client) get(p string) answer {
	return c.do(http.MethodGet, "/dav"+p, nil, 0, nil, false)
}

func (c *client) mkcol(p string) answer {
	return c.do("MKCOL", "/dav"+p, nil, 0, nil, true)
}

// entry is one member of a PROPFIND listing.
type entry struct {
	name string
	dir  bool
	size int64
}

type multistatus struct {
	Responses []struct {
		Href  string `xml:"href"`
		Props []struct {
			Status string `xml:"status"`
			Prop   struct {
				Length       string `xml:"getcontentlength"`
				ResourceType struct {
					Collection *struct{} `xml:"collection"`
				} `xml:"resourcetype"`
			} `xml:"prop"`
		} `xml:"propstat"`
	} `xml:"response"`
}

// list answers a Depth 1 PROPFIND of folder p with its members (not p).
func (c *client) list(p string) (map[string]entry, answer) {
	a := c.do("PROPFIND", "/dav"+p, nil, 0, http.Header{"Depth": {"1"}}, true)
	if a.err != nil || a.status != http.StatusMultiStatus {
		return nil, a
	}
	var ms multistatus
	if err := xml.Unmarshal(a.body, &ms); err != nil {
		a.err = fmt.Errorf("PROPFIND body: %w", err)
		return nil, a
	}
	out := map[string]entry{}
	self := strings.TrimSuffix("/dav"+p, "/")
	for _, r := range ms.Responses {
		href, err := url.PathUnescape(r.Href)
		if err != nil {
			a.err = err
			return nil, a
		}
		href = strings.TrimSuffix(href, "/")
		if href == self {
			continue
		}
		e := entry{name: path.Base(href)}
		for _, ps := range r.Props {
			if !strings.Contains(ps.Status, " 200 ") {
				continue
			}
			if ps.Prop.ResourceType.Collection != nil {
				e.dir = true
			}
			if ps.Prop.Length != "" {
				e.size, _ = strconv.ParseInt(ps.Prop.Length, 10, 64)
			}
		}
		out[e.name] = e
	}
	return out, a
}

// tusCreate starts an upload of size bytes to folder/name and returns its
// path (/uploads/<id>).
func (c *client) tusCreate(folder, name string, size int64) (string, answer) {
	meta := "filename " + base64.StdEncoding.EncodeToString([]byte(name)) +
		",folder " + base64.StdEncoding.EncodeToString([]byte(folder))
	a := c.do(http.MethodPost, "/uploads/", nil, 0, http.Header{
		"Tus-Resumable": {"1.0.0"}, "Upload-Length": {strconv.FormatInt(size, 10)}, "Upload-Metadata": {meta},
	}, true)
	if a.err != nil || a.status != http.StatusCreated {
		return "", a
	}
	u, err := url.Parse(a.header.Get("Location"))
	if err != nil {
		a.err = err
		return "", a
	}
	return u.Path, a
}

// tusHead answers the upload's offset.
func (c *client) tusHead(loc string) (int64, answer) {
	a := c.do(http.MethodHead, loc, nil, 0, http.Header{"Tus-Resumable": {"1.0.0"}}, true)
	if a.err != nil || a.status != http.StatusOK {
		return -1, a
	}
	off, err := strconv.ParseInt(a.header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		a.err = fmt.Errorf("Upload-Offset: %w", err)
	}
	return off, a
}

// tusPatch sends data at off and answers the new offset.
func (c *client) tusPatch(loc string, off int64, data []byte) (int64, answer) {
	a := c.do(http.MethodPatch, loc, bytes.NewReader(data), int64(len(data)), http.Header{
		"Tus-Resumable": {"1.0.0"}, "Upload-Offset": {strconv.FormatInt(off, 10)},
		"Content-Type": {"application/offset+octet-stream"},
	}, true)
	if a.err != nil || a.status != http.StatusNoContent {
		return -1, a
	}
	n, err := strconv.ParseInt(a.header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		a.err = fmt.Errorf("Upload-Offset: %w", err)
	}
	return n, a
}

// tusFinish drives an upload to its end with HEAD and PATCH, retrying
// failed attempts (with the backoff a 503's Retry-After asks for, capped)
// until deadline. It returns the answers that were not successes.
func (c *client) tusFinish(loc string, data []byte, chunk int, deadline time.Time) ([]answer, error) {
	var bad []answer
	for time.Now().Before(deadline) {
		off, a := c.tusHead(loc)
		if a.err != nil || a.status != http.StatusOK {
			bad = append(bad, a)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if off == int64(len(data)) {
			return bad, nil
		}
		end := min(int(off)+chunk, len(data))
		if _, a := c.tusPatch(loc, off, data[off:end]); a.err != nil || a.status != http.StatusNoContent {
			bad = append(bad, a)
			time.Sleep(200 * time.Millisecond)
		}
	}
	return bad, fmt.Errorf("upload %s did not finish in time", loc)
}

// rawRequest sends a request over a fresh TCP connection with a
// Content-Length of len(body), writes only body[:cut], and closes the
// connection: with rst, abruptly (RST), else with FIN. It models a client
// that dies mid-body.
func (c *client) rawRequest(method, p string, hdr http.Header, body []byte, cut int, rst bool) error {
	conn, err := c.openRaw(method, p, hdr, int64(len(body)))
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write(body[:cut]); err != nil {
		return err
	}
	if rst {
		conn.SetLinger(0)
		return nil
	}
	// A FIN: the server reads the bytes that were sent, then EOF. Wait
	// for its answer (an error status for the short body) or its close,
	// so the next request does not race the server's cleanup.
	conn.CloseWrite()
	io.Copy(io.Discard, bufio.NewReader(conn))
	return nil
}

// openRaw opens a TCP connection and sends a request's headers, with a
// Content-Length of size; the caller writes the body.
func (c *client) openRaw(method, p string, hdr http.Header, size int64) (*net.TCPConn, error) {
	u, err := url.Parse(c.base)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", method, p, u.Host, size)
	b.WriteString("Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+adminPassword)) + "\r\n")
	for k, vs := range hdr {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := conn.Write(b.Bytes()); err != nil {
		conn.Close()
		return nil, err
	}
	return conn.(*net.TCPConn), nil
}

// readStatus reads the status code of the answer on conn.
func readStatus(conn net.Conn) (int, error) {
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// randomBytes returns n bytes from a seeded generator.
func randomBytes(seed uint64, n int) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24), 7})
	b := make([]byte, n)
	r.Read(b)
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// reliability is a suite's fault ledger.
type reliability struct {
	suite     string
	faults    int
	survived  int
	bytesLost int64
	extra     []string
}

func (r *reliability) log(t testing.TB) {
	t.Helper()
	line := fmt.Sprintf("RELIABILITY suite=%s faults=%d survived=%d bytes_lost=%d", r.suite, r.faults, r.survived, r.bytesLost)
	if len(r.extra) > 0 {
		line += " " + strings.Join(r.extra, " ")
	}
	t.Log(line)
	if r.bytesLost != 0 || r.survived != r.faults {
		t.Errorf("%s: %d of %d faults survived, %d bytes lost", r.suite, r.survived, r.faults, r.bytesLost)
	}
}

// start runs an instance with opts and makes folder in it.
func start(t testing.TB, opts proctest.Options, folder string) (*proctest.Instance, *client) {
	t.Helper()
	in := proctest.Start(t, opts)
	c := newClient(t, in)
	if a := c.mkcol(folder); a.status != http.StatusCreated {
		t.Fatalf("MKCOL %s: %v", folder, a)
	}
	return in, c
}
