package davfs_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/dbtest"
)

// counts snapshots what a bad request could have changed.
func (e *env) counts() string {
	e.t.Helper()
	var out []string
	for _, table := range []string{"nodes", "dead_props", "dav_locks"} {
		n, err := e.db.NewSelect().TableExpr(table).Count(context.Background())
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s=%d", table, n))
	}
	var versions int64
	e.db.NewSelect().TableExpr("nodes").ColumnExpr("COALESCE(SUM(version), 0)").Scan(context.Background(), &versions)
	return strings.Join(out, " ") + fmt.Sprintf(" versions=%d", versions)
}

// TestBadInput sends malformed requests over raw connections (so no client
// library cleans them first) and checks each gets its 4xx and changes
// nothing.
func TestBadInput(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db)
		a := e.admin("alice")
		e.folder(e.root, "dir")
		e.file(e.root, "f.txt", "content")
		authz := basicHeader(a)
		req := func(method, target string, hdr string, body string) string {
			return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: dav.test\r\n%s%sContent-Length: %d\r\nConnection: close\r\n\r\n%s",
				method, target, authz, hdr, len(body), body)
		}
		deep := strings.Repeat("<a>", 100000) + strings.Repeat("</a>", 100000)
		big := `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>` + strings.Repeat("<D:getetag/>", 100000) + `</D:prop></D:propfind>`
		patch := func(inner string) string {
			return `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>` + inner + `</D:prop></D:set></D:propertyupdate>`
		}
		cases := []struct {
			name string
			raw  string
			want int
		}{
			{"dot-dot", req("PUT", "/dav/../evil.txt", "", "x"), 400},
			{"nested dot-dot", req("PUT", "/dav/dir/../../evil.txt", "", "x"), 400},
			{"encoded dot-dot", req("PUT", "/dav/%2e%2e/evil.txt", "", "x"), 400},
			{"encoded slash traversal", req("PUT", "/dav/dir/..%2f..%2fevil.txt", "", "x"), 400},
			{"double encoding", req("PUT", "/dav/%252e%252e/evil.txt", "", "x"), 400},
			{"encoded backslash", req("PUT", "/dav/dir%5c..%5cevil.txt", "", "x"), 400},
			{"backslash", req("PUT", `/dav/dir\..\evil.txt`, "", "x"), 400},
			{"NUL", req("PUT", "/dav/evil%00.txt", "", "x"), 400},
			{"control character", req("PUT", "/dav/evil%0a.txt", "", "x"), 400},
			{"invalid UTF-8", req("PUT", "/dav/evil%ff.txt", "", "x"), 400},
			{"name too long", req("PUT", "/dav/"+strings.Repeat("n", 256), "", "x"), 400},
			{"MKCOL traversal", req("MKCOL", "/dav/%2e%2e", "", ""), 400},
			{"Depth 2", req("PROPFIND", "/dav/", "Depth: 2\r\n", ""), 400},
			{"Depth infinity", req("PROPFIND", "/dav/", "Depth: infinity\r\n", ""), 403},
			{"Depth absent on a folder", req("PROPFIND", "/dav/dir/", "", ""), 403},
			{"Overwrite bogus", req("COPY", "/dav/f.txt", "Destination: /dav/g.txt\r\nOverwrite: maybe\r\n", ""), 400},
			{"Timeout bogus", req("LOCK", "/dav/f.txt", "Timeout: forever\r\n", strings.Replace(lockBody, "%s", "exclusive", 1)), 400},
			{"If unterminated", req("PUT", "/dav/f.txt", "If: (<opaquelocktoken:x>\r\n", "x"), 400},
			{"If garbage", req("PUT", "/dav/f.txt", "If: hello\r\n", "x"), 400},
			{"If empty list", req("PUT", "/dav/f.txt", "If: ()\r\n", "x"), 400},
			{"If unmatched etag", req("PUT", "/dav/f.txt", `If: (["nope"])`+"\r\n", "x"), 412},
			{"X-OC-Mtime bogus", req("PUT", "/dav/f.txt", "X-OC-Mtime: yesterday\r\n", "x"), 400},
			{"Destination other host", req("MOVE", "/dav/f.txt", "Destination: http://evil.example/dav/g.txt\r\n", ""), 502},
			{"Destination traversal", req("MOVE", "/dav/f.txt", "Destination: /dav/../g.txt\r\n", ""), 400},
			{"Destination encoded traversal", req("COPY", "/dav/f.txt", "Destination: http://dav.test/dav/dir/%2e%2e/%2e%2e/g.txt\r\n", ""), 400},
			{"Destination NUL", req("COPY", "/dav/f.txt", "Destination: /dav/g%00.txt\r\n", ""), 400},
			{"Destination outside the tree", req("COPY", "/dav/f.txt", "Destination: /api/v1/x\r\n", ""), 502},
			{"Destination missing", req("MOVE", "/dav/f.txt", "", ""), 400},
			{"XML too large", req("PROPFIND", "/dav/f.txt", "Depth: 0\r\n", big), 413},
			{"XML too deep", req("PROPFIND", "/dav/f.txt", "Depth: 0\r\n", deep), 400},
			{"XML malformed", req("PROPFIND", "/dav/f.txt", "Depth: 0\r\n", "<D:propfind xmlns:D='DAV:'><D:prop>"), 400},
			{"XML entity", req("PROPPATCH", "/dav/f.txt", "", `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>`+patch(`<x xmlns="y:">&e;</x>`)), 400},
			{"XML empty prefix declaration", req("PROPFIND", "/dav/f.txt", "Depth: 0\r\n", `<D:propfind xmlns:D="DAV:"><D:prop><bar:foo xmlns:bar=""/></D:prop></D:propfind>`), 400},
			{"XML unbound prefix", req("PROPPATCH", "/dav/f.txt", "", patch(`<q:x>1</q:x>`)), 400},
			{"XML wrong root", req("PROPPATCH", "/dav/f.txt", "", `<D:propfind xmlns:D="DAV:"/>`), 400},
			{"LOCK body malformed", req("LOCK", "/dav/f.txt", "", `<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:weird/></D:lockscope></D:lockinfo>`), 400},
			{"UNLOCK without token", req("UNLOCK", "/dav/f.txt", "", ""), 400},
			{"partial PUT", req("PUT", "/dav/f.txt", "Content-Range: bytes 0-0/7\r\n", "x"), 400},
			{"PUT root", req("PUT", "/dav/", "", "x"), 405},
		}
		before := e.counts()
		for _, c := range cases {
			if got := sendRaw(t, e, c.raw); got != c.want {
				t.Errorf("%s: status %d, want %d", c.name, got, c.want)
			}
		}
		if after := e.counts(); after != before {
			t.Fatalf("bad input changed the store: %s -> %s", before, after)
		}
		if got := e.content(e.live("/f.txt")); got != "content" {
			t.Fatalf("f.txt = %q", got)
		}
		// The finite-depth refusal names its precondition.
		code, _, body := e.do(a, "PROPFIND", "/", nil, map[string]string{"Depth": "infinity"})
		if code != 403 || !strings.Contains(body, "<D:propfind-finite-depth/>") {
			t.Fatalf("Depth infinity: %d %s", code, body)
		}
	})
}
