package davfs

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/filegate/filegate/model"
)

// The fuzz targets below each have a seed corpus in
// testdata/fuzz/<FuzzName>/ with the hostile cases (traversal in every
// encoding, NFD names, invalid UTF-8, deep nesting, bodies past the 1 MiB
// cap). Every target checks properties, not only the absence of panics.

// FuzzRequestPath sends an arbitrary request target through net/http's
// request parser and the door's requestPath, the one function that turns a
// URL into the path the authorizer and the store both see.
func FuzzRequestPath(f *testing.F) {
	f.Add("/dav/a/b")
	f.Add("/dav/a/../b")
	f.Add("/dav/%2e%2e/etc")
	f.Fuzz(func(t *testing.T, target string) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n")))
		if err != nil {
			return // net/http answers 400 before any door runs
		}
		p, err := requestPath("/dav", r.URL)
		if err != nil {
			if !errors.Is(err, errOutside) && !errors.Is(err, model.ErrInvalid) {
				t.Fatalf("requestPath(%q) = %v, want errOutside or ErrInvalid", target, err)
			}
			return
		}
		rel := strings.TrimPrefix(r.URL.Path, "/dav")
		for _, seg := range strings.Split(rel, "/") {
			if seg == ".." {
				t.Fatalf("%q: a \"..\" segment was resolved to %q instead of refused", target, p)
			}
			if dec, err := url.PathUnescape(seg); err == nil && dec == ".." {
				t.Fatalf("%q: a double-encoded \"..\" was accepted as %q", target, p)
			}
		}
		checkCleanPath(t, target, p)
		if again, err := model.CleanPath(rel); err != nil || again != p {
			t.Fatalf("%q: the door made %q, model.CleanPath(%q) = %q, %v", target, p, rel, again, err)
		}
		// The href the door publishes for p leads back to p.
		for _, dir := range []bool{false, true} {
			href := string(appendHref(nil, "/dav", p, dir))
			r2, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + href + " HTTP/1.1\r\nHost: x\r\n\r\n")))
			if err != nil {
				t.Fatalf("%q: the door's href %q for %q is not a valid request target: %v", target, href, p, err)
			}
			if back, err := requestPath("/dav", r2.URL); err != nil || back != p {
				t.Fatalf("%q: href %q for %q resolves to %q, %v", target, href, p, back, err)
			}
		}
	})
}

// checkCleanPath asserts what every clean path is: absolute, no empty,
// "." or ".." segments, valid NFC UTF-8 without control characters or
// backslashes, within the limits, and a fixed point of CleanPath.
func checkCleanPath(t *testing.T, in, p string) {
	t.Helper()
	if !strings.HasPrefix(p, "/") || len(p) > model.MaxPathBytes {
		t.Fatalf("%q: clean path %q is not absolute or too long", in, p)
	}
	if !utf8.ValidString(p) || !norm.NFC.IsNormalString(p) {
		t.Fatalf("%q: clean path %q is not NFC UTF-8", in, p)
	}
	if again, err := model.CleanPath(p); err != nil || again != p {
		t.Fatalf("%q: CleanPath is not idempotent: %q then %q, %v", in, p, again, err)
	}
	if p == "/" {
		return
	}
	segs := strings.Split(p[1:], "/")
	if len(segs) > model.MaxDepth {
		t.Fatalf("%q: clean path %q deeper than %d", in, p, model.MaxDepth)
	}
	for _, s := range segs {
		if s == "" || s == "." || s == ".." || len(s) > model.MaxNameBytes || strings.ContainsRune(s, '\\') ||
			strings.IndexFunc(s, unicode.IsControl) >= 0 {
			t.Fatalf("%q: clean path %q has segment %q", in, p, s)
		}
	}
}

// xmlBody builds a request body from the fuzzer's pieces: a head, a middle
// repeated up to 64Ki times (deep nesting, bodies past the 1 MiB cap) and
// a tail.
func xmlBody(head, mid string, n uint16, tail string) string {
	if len(mid)*int(n) > 4<<20 {
		n = uint16((4 << 20) / max(len(mid), 1))
	}
	return head + strings.Repeat(mid, int(n)) + tail
}

// xmlDepth is the deepest element nesting of a well-formed body per
// encoding/xml, or -1 when it is not well-formed.
func xmlDepth(body string) int {
	d := xml.NewDecoder(strings.NewReader(body))
	depth, deepest := 0, 0
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			return deepest
		}
		if err != nil {
			return -1
		}
		switch tok.(type) {
		case xml.StartElement:
			depth++
			deepest = max(deepest, depth)
		case xml.EndElement:
			depth--
		}
	}
}

// checkBodyLimits asserts what every XML body parser guarantees through
// the real limiter: failures are ErrInvalid (400) or ErrTooLarge (413),
// and nothing over the size or depth limit is accepted.
func checkBodyLimits(t *testing.T, body string, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, model.ErrInvalid) && !errors.Is(err, model.ErrTooLarge) {
			t.Fatalf("error %v is neither ErrInvalid nor ErrTooLarge", err)
		}
		return
	}
	if len(body) > maxXMLBytes {
		t.Fatalf("a %d-byte body passed the %d-byte limit", len(body), maxXMLBytes)
	}
	if d := xmlDepth(body); d > maxXMLDepth {
		t.Fatalf("a body nested %d deep passed the depth limit %d", d, maxXMLDepth)
	}
}

// FuzzPropfindBody parses PROPFIND bodies through limitXML. An accepted
// request asks for exactly one thing, names real elements, and reads the
// same when written back out.
func FuzzPropfindBody(f *testing.F) {
	f.Add(`<D:propfind xmlns:D="DAV:"><D:prop>`, `<D:getetag/>`, uint16(1), `</D:prop></D:propfind>`)
	f.Add(`<D:propfind xmlns:D="DAV:">`, `<a>`, uint16(40), `</D:propfind>`)
	f.Fuzz(func(t *testing.T, head, mid string, n uint16, tail string) {
		body := xmlBody(head, mid, n, tail)
		req, err := parsePropfind(limitXML(strings.NewReader(body)))
		checkBodyLimits(t, body, err)
		if err != nil {
			return
		}
		var b bytes.Buffer
		b.WriteString(`<D:propfind xmlns:D="DAV:">`)
		switch req.kind {
		case findAllProp:
			b.WriteString(`<D:allprop/>`)
		case findPropName:
			b.WriteString(`<D:propname/>`)
		case findProp:
			b.WriteString(`<D:prop>`)
			for _, n := range req.props {
				checkName(t, n)
				writeStart(&b, n, nil, "")
				b.WriteString("</" + n.Local + ">")
			}
			b.WriteString(`</D:prop>`)
		default:
			t.Fatalf("unknown kind %d", req.kind)
		}
		if len(req.include) > 0 {
			b.WriteString(`<D:include>`)
			for _, n := range req.include {
				checkName(t, n)
				writeStart(&b, n, nil, "")
				b.WriteString("</" + n.Local + ">")
			}
			b.WriteString(`</D:include>`)
		}
		b.WriteString(`</D:propfind>`)
		again, err := parsePropfind(strings.NewReader(b.String()))
		if err != nil || !reflect.DeepEqual(again, req) {
			t.Fatalf("PROPFIND %+v written as %q reads back as %+v, %v", req, b.String(), again, err)
		}
	})
}

func checkName(t *testing.T, n xml.Name) {
	t.Helper()
	if n.Local == "" || strings.Contains(n.Local, ":") {
		t.Fatalf("parsed element name %+v", n)
	}
}

// FuzzProppatchBody parses PROPPATCH bodies through limitXML. A stored
// value must replay: set inside another document, it parses to the same
// bytes (the value is what PROPFIND later sends back).
func FuzzProppatchBody(f *testing.F) {
	f.Add(`<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>`, `<x xmlns="y:" xml:lang="en">a<b/>&amp;</x>`, uint16(1), `</D:prop></D:set></D:propertyupdate>`)
	f.Add(`<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><v xmlns="z:">`, `<a>`, uint16(40), `</v></D:prop></D:set></D:propertyupdate>`)
	f.Fuzz(func(t *testing.T, head, mid string, n uint16, tail string) {
		body := xmlBody(head, mid, n, tail)
		ops, err := parseProppatch(limitXML(strings.NewReader(body)))
		checkBodyLimits(t, body, err)
		if err != nil {
			return
		}
		if len(ops) == 0 {
			t.Fatal("an accepted PROPPATCH has no operation")
		}
		if len(ops) > 64 {
			// A 1 MiB body holds 50 000 operations; replaying the first
			// and the last keeps the fuzzer fast.
			ops = append(ops[:63], ops[len(ops)-1])
		}
		for _, op := range ops {
			checkName(t, op.name)
			if op.remove {
				continue
			}
			doc := `<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><v xmlns="z:">` + string(op.value) + `</v></D:prop></D:set></D:propertyupdate>`
			again, err := parseProppatch(strings.NewReader(doc))
			if err != nil || len(again) != 1 || string(again[0].value) != string(op.value) {
				t.Fatalf("stored value %q does not replay: %v %v", op.value, err, again)
			}
		}
	})
}

// FuzzLockBody parses LOCK bodies through limitXML. An accepted owner
// replays like a property value (lock discovery sends it back).
func FuzzLockBody(f *testing.F) {
	f.Add(`<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>`, `me`, uint16(1), `</D:owner></D:lockinfo>`)
	f.Add(`<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>`, `<a>`, uint16(40), `</D:owner></D:lockinfo>`)
	f.Fuzz(func(t *testing.T, head, mid string, n uint16, tail string) {
		body := xmlBody(head, mid, n, tail)
		li, ok, err := parseLockInfo(limitXML(strings.NewReader(body)))
		checkBodyLimits(t, body, err)
		if err != nil || !ok {
			return // callers check err first; !ok is a refresh
		}
		scope := `<D:exclusive/>`
		if li.shared {
			scope = `<D:shared/>`
		}
		doc := `<D:lockinfo xmlns:D="DAV:"><D:lockscope>` + scope + `</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>` + li.owner + `</D:owner></D:lockinfo>`
		again, ok, err := parseLockInfo(strings.NewReader(doc))
		if err != nil || !ok || again != li {
			t.Fatalf("lock %+v does not replay: %+v %v %v", li, again, ok, err)
		}
	})
}

// formatIf writes a parsed If header back out.
func formatIf(h *ifHeader) string {
	var b strings.Builder
	for _, l := range h.lists {
		if l.tag != "" {
			b.WriteString("<" + l.tag + "> ")
		}
		b.WriteByte('(')
		for i, c := range l.conds {
			if i > 0 {
				b.WriteByte(' ')
			}
			if c.not {
				b.WriteString("Not ")
			}
			if c.token != "" {
				b.WriteString("<" + c.token + ">")
			} else {
				b.WriteString("[" + c.etag + "]")
			}
		}
		b.WriteString(") ")
	}
	return b.String()
}

// FuzzIfHeader parses If headers. An accepted header is within the size
// cap, has well-formed conditions, and reads the same when written back.
func FuzzIfHeader(f *testing.F) {
	f.Add(`(<opaquelocktoken:a> ["e"]) (Not <DAV:no-lock>)`)
	f.Add(`<http://x/dav/a> (<opaquelocktoken:b>)`)
	f.Fuzz(func(t *testing.T, v string) {
		h, err := parseIf(v)
		if err != nil {
			if !errors.Is(err, model.ErrInvalid) {
				t.Fatalf("parseIf(%q) = %v, want ErrInvalid", v, err)
			}
			return
		}
		if len(v) > 16<<10 || len(h.lists) == 0 {
			t.Fatalf("parseIf(%q) accepted %d bytes, %d lists", v, len(v), len(h.lists))
		}
		tagged := h.lists[0].tag != ""
		for _, l := range h.lists {
			if (l.tag != "") != tagged || len(l.conds) == 0 {
				t.Fatalf("parseIf(%q): list %+v", v, l)
			}
			for _, c := range l.conds {
				if (c.token == "") == (c.etag == "") || strings.ContainsAny(c.token, " \t>") {
					t.Fatalf("parseIf(%q): condition %+v", v, c)
				}
			}
		}
		out := formatIf(h)
		again, err := parseIf(out)
		if err != nil || !reflect.DeepEqual(again, h) {
			t.Fatalf("parseIf(%q) = %+v, written as %q reads %+v, %v", v, h, out, again, err)
		}
	})
}

// FuzzTimeoutHeader parses Timeout headers. Whatever a client asks, the
// lock it gets lasts from one second to MaxLockTimeout (one hour), and a
// granted timeout asked for again is granted the same.
func FuzzTimeoutHeader(f *testing.F) {
	f.Add("Second-3600")
	f.Add("Infinite, Second-4100000000")
	f.Fuzz(func(t *testing.T, v string) {
		d, err := parseTimeout(v)
		if err != nil {
			if !errors.Is(err, model.ErrInvalid) {
				t.Fatalf("parseTimeout(%q) = %v, want ErrInvalid", v, err)
			}
			return
		}
		if d < 0 {
			t.Fatalf("parseTimeout(%q) = %v", v, d)
		}
		got := capTimeout(d)
		if got < time.Second || got > MaxLockTimeout || got%time.Second != 0 {
			t.Fatalf("Timeout %q grants %v, want 1s..%v in whole seconds", v, got, MaxLockTimeout)
		}
		again, err := parseTimeout("Second-" + strconv.FormatInt(int64(got/time.Second), 10))
		if err != nil || capTimeout(again) != got {
			t.Fatalf("Timeout %q grants %v, asked again grants %v, %v", v, got, capTimeout(again), err)
		}
	})
}

// TestBodyLimits pins what the fuzz seeds probe: a well-formed body past
// 1 MiB is ErrTooLarge through limitXML (and would parse without it), and
// nesting past maxXMLDepth is ErrInvalid while nesting at it parses.
func TestBodyLimits(t *testing.T) {
	pf := `<D:propfind xmlns:D="DAV:"><D:prop>`
	big := pf + strings.Repeat(`<x:a xmlns:x="u:"/>`, 60000) + `</D:prop></D:propfind>`
	nest := func(n int) string {
		return pf + strings.Repeat("<a>", n) + strings.Repeat("</a>", n) + `</D:prop></D:propfind>`
	}
	tests := []struct {
		name    string
		body    string
		limited bool
		want    error
	}{
		{"1.1 MiB of properties through the limiter", big, true, model.ErrTooLarge},
		{"the same without the limiter", big, false, nil},
		{"nested to the depth limit", nest(maxXMLDepth - 3), true, nil},
		{"nested past it", nest(maxXMLDepth), true, model.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r io.Reader = strings.NewReader(tt.body)
			if tt.limited {
				r = limitXML(r)
			}
			_, err := parsePropfind(r)
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("%d bytes: %v, want %v", len(tt.body), err, tt.want)
			}
		})
	}
}
