package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/filegate/filegate/cmd/filegate/proctest"
	"github.com/filegate/filegate/model/dbtest"
)

// hostileRequest is one crafted request, written raw to the socket so that
// nothing on the client side cleans it up first.
type hostileRequest struct {
	name string
	raw  string
}

// craft builds a raw HTTP/1.1 request with Basic credentials for the admin
// (who may do anything, so a refusal is never what stops the input).
func craft(method, target string, hdr map[string]string, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n", method, target)
	b.WriteString("Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("admin:secret-admin")) + "\r\n")
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	return b.String()
}

// hostileCatalogue is the hand-written part: every class of bad input the
// issues name, on every door.
func hostileCatalogue() []hostileRequest {
	deep := strings.Repeat("<a>", 20000) + strings.Repeat("</a>", 20000)
	big := `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>` + strings.Repeat("<x/>", 300000) + `</D:prop></D:propfind>`
	meta := func(kv ...string) string {
		var parts []string
		for i := 0; i+1 < len(kv); i += 2 {
			parts = append(parts, kv[i]+" "+base64.StdEncoding.EncodeToString([]byte(kv[i+1])))
		}
		return strings.Join(parts, ",")
	}
	tus := func(h map[string]string) map[string]string {
		if _, ok := h["Tus-Resumable"]; !ok {
			h["Tus-Resumable"] = "1.0.0"
		}
		return h
	}
	var out []hostileRequest
	add := func(name, raw string) { out = append(out, hostileRequest{name, raw}) }
	for _, p := range []string{"/dav/../etc/passwd", "/dav/%2e%2e/%2e%2e/etc", "/dav/..%2f..%2fetc", "/dav/%252e%252e/x",
		"/dav/a\\..\\b", "/dav/a%00b", "/dav/" + strings.Repeat("n", 300), "/dav/%ff%fe", "/dav/" + strings.Repeat("d/", 200),
		"/dav/a%2fb", "/api/v1/files/..%2f..", "/uploads/../../x", "/api/v1/files/%00"} {
		for _, m := range []string{"GET", "PUT", "PROPFIND", "MKCOL", "DELETE", "MOVE", "COPY", "LOCK", "PROPPATCH"} {
			add(m+" "+p, craft(m, p, map[string]string{"Destination": "http://127.0.0.1/dav/x", "Depth": "1"}, "x"))
		}
	}
	for _, d := range []string{"http://127.0.0.1/dav/../../etc", "http://evil.example/dav/x", "/dav/%2e%2e/x", "::::", "http://127.0.0.1/dav/a%00", "http://127.0.0.1/other/x"} {
		add("MOVE Destination "+d, craft("MOVE", "/dav/", map[string]string{"Destination": d}, ""))
		add("COPY Destination "+d, craft("COPY", "/dav/", map[string]string{"Destination": d}, ""))
	}
	for name, h := range map[string]map[string]string{
		"If garbage":        {"If": "(<<<>>>"},
		"If unterminated":   {"If": "(<opaquelocktoken:x> [\"e\""},
		"If huge":           {"If": strings.Repeat("(<urn:x>)", 5000)},
		"Timeout garbage":   {"Timeout": "Second-abc, Infinite-x"},
		"Timeout negative":  {"Timeout": "Second--5"},
		"Depth garbage":     {"Depth": "banana"},
		"Overwrite garbage": {"Overwrite": "maybe", "Destination": "http://127.0.0.1/dav/y"},
		"Range garbage":     {"Range": "bytes=-,--,9-1"},
		"Range many":        {"Range": "bytes=" + strings.Repeat("0-0,", 5000) + "1-1"},
		"Range overflow":    {"Range": "bytes=99999999999999999999-"},
	} {
		for _, m := range []string{"GET", "LOCK", "PUT", "COPY", "PROPFIND"} {
			add(m+" "+name, craft(m, "/dav/", h, ""))
		}
	}
	add("PROPFIND deep XML", craft("PROPFIND", "/dav/", map[string]string{"Depth": "1"}, deep))
	add("PROPPATCH deep XML", craft("PROPPATCH", "/dav/", nil, deep))
	add("LOCK deep XML", craft("LOCK", "/dav/hostile-lock", nil, deep))
	add("PROPFIND 2 MiB XML", craft("PROPFIND", "/dav/", map[string]string{"Depth": "1"}, big))
	add("PROPFIND infinity", craft("PROPFIND", "/dav/", map[string]string{"Depth": "infinity"}, ""))
	add("PROPPATCH not XML", craft("PROPPATCH", "/dav/", nil, "\x00\x01\x02"))
	add("LOCK billion laughs", craft("LOCK", "/dav/x", nil, `<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><D:lockinfo xmlns:D="DAV:">&b;</D:lockinfo>`))
	for name, h := range map[string]map[string]string{
		"offset negative":     {"Upload-Offset": "-1", "Content-Type": "application/offset+octet-stream"},
		"offset text":         {"Upload-Offset": "ten", "Content-Type": "application/offset+octet-stream"},
		"offset 2^63":         {"Upload-Offset": "9223372036854775808", "Content-Type": "application/offset+octet-stream"},
		"length 2^63":         {"Upload-Length": "9223372036854775808"},
		"length negative":     {"Upload-Length": "-5"},
		"metadata bad b64":    {"Upload-Length": "5", "Upload-Metadata": "filename !!!notbase64"},
		"metadata 9 KiB":      {"Upload-Length": "5", "Upload-Metadata": "filename " + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("x"), 9<<10))},
		"filename CRLF":       {"Upload-Length": "5", "Upload-Metadata": meta("filename", "a\r\nb")},
		"folder traversal":    {"Upload-Length": "5", "Upload-Metadata": meta("filename", "x", "folder", "/../../etc")},
		"no Tus-Resumable":    {"Tus-Resumable": "", "Upload-Length": "5"},
		"wrong Tus version":   {"Tus-Resumable": "0.0.1", "Upload-Length": "5"},
		"concat of strangers": {"Upload-Concat": "final;/uploads/abc /uploads/../x"},
		"checksum garbage":    {"Upload-Length": "5", "Upload-Checksum": "sha1 ????"},
	} {
		add("tus POST "+name, craft("POST", "/uploads/", tus(h), ""))
		add("tus PATCH "+name, craft("PATCH", "/uploads/0123456789abcdef0123456789abcdef", tus(h), "hello"))
		add("tus HEAD "+name, craft("HEAD", "/uploads/../../etc", tus(h), ""))
	}
	for _, b := range []string{"{", "[]", `{"name":` + strings.Repeat("[", 100000) + `}`, `{"name":"\u0000"}`, "null", strings.Repeat("x", 1<<20)} {
		add("API PATCH bad JSON", craft("PATCH", "/api/v1/files/nope", map[string]string{"Content-Type": "application/json"}, b))
		add("API POST grants bad JSON", craft("POST", "/api/v1/files/nope/grants", map[string]string{"Content-Type": "application/json"}, b))
		add("API POST policies bad JSON", craft("POST", "/api/v1/policies", map[string]string{"Content-Type": "application/json"}, b))
	}
	for _, q := range []string{"eq(", "and(or(not(", "like(title,%25%25%25%25)", "sort(+nope)", "limit(-1)", strings.Repeat("and(", 2000), "eq(title,%FF%FE)"} {
		add("RQL "+q[:min(len(q), 20)], craft("GET", "/api/v1/files?q="+q, nil, ""))
	}
	add("multipart without boundary", craft("POST", "/api/v1/files", map[string]string{"Content-Type": "multipart/form-data"}, "--x\r\n"))
	add("multipart truncated", craft("POST", "/api/v1/files", map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, "--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc"))
	for _, v := range []string{`\u0000`, `\udc00`, `a\u0000b`} {
		body := `{"title":"` + v + `","description":"` + v + `","tags":["` + v + `"]}`
		add("API upload text "+v, craft("POST", "/api/v1/files?name=t.txt&folder=/&title=a%00b&description=%ff&source=%00", map[string]string{"Content-Type": "application/octet-stream"}, "hello"))
		add("API PATCH root text "+v, craft("PATCH", "/api/v1/files/root", map[string]string{"Content-Type": "application/json"}, body))
		add("API search text "+v, craft("GET", "/api/v1/files?q=eq(title,a%00b)", nil, ""))
	}
	add("signed link forged", craft("GET", "/api/v1/files/x/content?key=k&expires=9999999999&signature=AAAA", nil, ""))
	add("header 100 KiB", craft("GET", "/dav/", map[string]string{"X-Big": strings.Repeat("h", 100<<10)}, ""))
	add("bad Authorization", "GET /dav/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic !!!!\r\nConnection: close\r\n\r\n")
	add("bad Bearer", "GET /api/v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer fgt_\x01\r\nConnection: close\r\n\r\n")
	add("request line junk", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")
	add("chunked garbage", "PUT /dav/chunky HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "+base64.StdEncoding.EncodeToString([]byte("admin:secret-admin"))+"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n")
	return out
}

// randomRequest mutates a valid request at random: method, path bytes,
// header names and values, and body, from a seeded generator so a failure
// can be replayed.
func randomRequest(r *rand.Rand) hostileRequest {
	methods := []string{"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "PROPFIND", "PROPPATCH", "MKCOL", "MOVE", "COPY", "LOCK", "UNLOCK", "OPTIONS"}
	prefixes := []string{"/dav/", "/uploads/", "/api/v1/files/", "/api/v1/files", "/api/v1/policies", "/api/v1/users/", "/admin/", "/"}
	junk := []string{"..", "%2e", "%2f", "%00", "%ff", "\\", "//", "./", "%252e", "é", "e\u0301", "a", "b.txt", "%", "?", "#", ";", "~"}
	var p strings.Builder
	p.WriteString(prefixes[r.IntN(len(prefixes))])
	for range r.IntN(8) {
		p.WriteString(junk[r.IntN(len(junk))])
		if r.IntN(3) == 0 {
			p.WriteByte('/')
		}
	}
	hdrs := map[string]string{}
	names := []string{"Depth", "Destination", "Overwrite", "If", "Timeout", "Range", "If-Match", "If-None-Match", "Lock-Token",
		"Upload-Offset", "Upload-Length", "Upload-Metadata", "Upload-Concat", "Upload-Checksum", "Tus-Resumable", "Content-Type", "X-OC-Mtime"}
	vals := []string{"", "-1", "0", "1", "infinity", "T", "F", "<urn:x>", "(<x>)", "Second-99999999999", "bytes=0-", "bytes=-0",
		"*", "9223372036854775808", "filename " + base64.StdEncoding.EncodeToString([]byte("..")), "final;x", "sha256 AAAA", "1.0.0",
		"application/json", "multipart/form-data; boundary=", "http://127.0.0.1/dav/" + string(rune(0x10FFFF)), "\xff\xfe"}
	for range r.IntN(5) {
		hdrs[names[r.IntN(len(names))]] = vals[r.IntN(len(vals))]
	}
	bodies := []string{"", "x", "{}", `{"name":1}`, "<D:propfind xmlns:D=\"DAV:\"><D:allprop/></D:propfind>", "<a><b>", strings.Repeat("<a>", 500)}
	m := methods[r.IntN(len(methods))]
	raw := craft(m, strings.ReplaceAll(p.String(), " ", "%20"), hdrs, bodies[r.IntN(len(bodies))])
	return hostileRequest{name: fmt.Sprintf("random %s %q %v", m, p.String(), hdrs), raw: raw}
}

// sendRaw writes one raw request and returns the status of the answer, or
// 0 when the server closed the connection without one (which it may for
// input that is not HTTP at all).
func sendRaw(addr, raw string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return 0, nil // the server may close before reading everything
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, nil
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestFaultHostileInputs sends every class of bad input the issues name,
// plus seeded random mutations, to the real binary on PostgreSQL: no
// answer may be a 5xx, the process must never restart or log a panic, and
// it must still serve afterwards.
func TestFaultHostileInputs(t *testing.T) {
	random := 1500
	if os.Getenv("FILEGATE_CHAOS") == "long" {
		random = 30000
	}
	in := proctest.Start(t, proctest.Options{DatabaseURL: dbtest.URL(t, dbtest.Postgres)})
	addr := strings.TrimPrefix(in.URL, "http://")
	pid := in.PID()
	reqs := hostileCatalogue()
	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	for range random {
		reqs = append(reqs, randomRequest(r))
	}
	statuses := map[int]int{}
	fivexx := 0
	for _, q := range reqs {
		status, err := sendRaw(addr, q.raw)
		if err != nil {
			t.Fatalf("%s: cannot connect: %v (the server died?)\n%s", q.name, err, in.Logs())
		}
		statuses[status]++
		// RFC 4918 (9.8.5, 9.9.4): a Destination on another server or
		// outside the WebDAV namespace is 502 Bad Gateway.
		if status == http.StatusBadGateway && strings.Contains(q.raw, "Destination:") && (strings.HasPrefix(q.raw, "MOVE ") || strings.HasPrefix(q.raw, "COPY ")) {
			continue
		}
		if status >= 500 {
			fivexx++
			t.Errorf("%s: %d (seed %d)", q.name, status, seed)
		}
	}
	if got := in.PID(); got != pid {
		t.Fatalf("the server restarted: pid %d, then %d", pid, got)
	}
	resp, err := http.Get(in.URL + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("not ready after the hostile inputs: %v %v", resp, err)
	}
	resp.Body.Close()
	if logs := in.Logs(); strings.Contains(logs, "panic") {
		t.Fatalf("the server logged a panic:\n%s", logs)
	}
	t.Logf("RELIABILITY hostile_inputs=%d fivexx=%d restarts=0 statuses=%v seed=%d", len(reqs), fivexx, statuses, seed)
}
