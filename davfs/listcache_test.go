package davfs_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/davfs"
	"github.com/filegate/filegate/model/dbtest"
)

// timeoutElem is the one part of a listing that moves with the clock.
var timeoutElem = regexp.MustCompile(`<D:timeout>[^<]*</D:timeout>`)

// TestListingCacheFollowsEveryChange runs two instances with listing
// caches and one without on one database. After every kind of change made
// through the second instance (or straight in the store, as the other
// doors do), the first instance's listing, asked twice so the second
// answer comes from its cache, must equal the uncached instance's.
func TestListingCacheFollowsEveryChange(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		cacheA := davfs.NewListingCache(8 << 20)
		a := newEnvWith(t, db, cacheA)
		alice := a.admin("alice")
		b := newEnvWith(t, db, davfs.NewListingCache(8<<20))
		c := newEnvWith(t, db, nil)
		ctx := context.Background()

		list := func(e *env, p string, hdr map[string]string) string {
			t.Helper()
			h := map[string]string{"Depth": "1"}
			for k, v := range hdr {
				h[k] = v
			}
			code, _, body := e.do(alice, "PROPFIND", p, nil, h)
			if code != http.StatusMultiStatus {
				t.Fatalf("PROPFIND %s: %d %s", p, code, body)
			}
			return timeoutElem.ReplaceAllString(body, "")
		}
		must := func(e *env, method, p, body string, hdr map[string]string, want ...int) {
			t.Helper()
			code, _, out := e.do(alice, method, p, strings.NewReader(body), hdr)
			for _, w := range want {
				if code == w {
					return
				}
			}
			t.Fatalf("%s %s: %d %s, want %v", method, p, code, out, want)
		}
		check := func(step string) {
			t.Helper()
			for _, hdr := range []map[string]string{nil, {"User-Agent": "WebDAVFS/3.0.0 (03008000) Darwin/22.1.0"}} {
				want := list(c, "/box", hdr)
				for i := range 2 {
					if got := list(a, "/box", hdr); got != want {
						t.Fatalf("after %s, listing %d of the caching instance differs from the uncached one:\n got %s\nwant %s", step, i+1, got, want)
					}
				}
			}
		}

		must(b, "MKCOL", "/box", "", nil, 201)
		must(b, "PUT", "/box/a.txt", "alpha", nil, 201)
		must(b, "PUT", "/box/b.txt", "bravo", nil, 201)
		must(b, "PUT", "/box/._b.txt", "apple double", nil, 201)
		hits := cacheA.Hits()
		check("setup")
		if cacheA.Hits() <= hits {
			t.Fatal("a repeated listing of an unchanged folder did not come from the cache")
		}

		const deadProp = `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:colour>blue</Z:colour></D:prop></D:set></D:propertyupdate>`
		const dropProp = `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:remove><D:prop><Z:colour/></D:prop></D:remove></D:propertyupdate>`
		const mtime = `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:getlastmodified>Tue, 01 Jan 2019 00:00:00 GMT</D:getlastmodified></D:prop></D:set></D:propertyupdate>`
		const lock = `<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>`
		var token string
		steps := []struct {
			name string
			do   func()
		}{
			{"a new file", func() { must(b, "PUT", "/box/c.txt", "charlie", nil, 201) }},
			{"an overwrite", func() { must(b, "PUT", "/box/a.txt", "alpha, longer now", nil, 204) }},
			{"a new modification time", func() { must(b, "PROPPATCH", "/box/b.txt", mtime, nil, 207) }},
			{"a dead property on a child", func() { must(b, "PROPPATCH", "/box/b.txt", deadProp, nil, 207) }},
			{"the dead property removed", func() { must(b, "PROPPATCH", "/box/b.txt", dropProp, nil, 207) }},
			{"a lock on a child", func() {
				code, h, body := b.do(alice, "LOCK", "/box/c.txt", strings.NewReader(lock), nil)
				if code != 200 {
					t.Fatalf("LOCK: %d %s", code, body)
				}
				token = h.Get("Lock-Token")
			}},
			{"the lock released", func() { must(b, "UNLOCK", "/box/c.txt", "", map[string]string{"Lock-Token": token}, 204) }},
			{"a rename", func() {
				must(b, "MOVE", "/box/c.txt", "", map[string]string{"Destination": b.url("/box/d.txt")}, 201)
			}},
			{"a move out", func() { must(b, "MOVE", "/box/d.txt", "", map[string]string{"Destination": b.url("/e.txt")}, 201) }},
			{"a move in", func() { must(b, "MOVE", "/e.txt", "", map[string]string{"Destination": b.url("/box/e.txt")}, 201) }},
			{"a copy in", func() {
				must(b, "COPY", "/box/a.txt", "", map[string]string{"Destination": b.url("/box/f.txt")}, 201)
			}},
			{"a new folder", func() { must(b, "MKCOL", "/box/sub", "", nil, 201) }},
			{"a change inside a child folder", func() { must(b, "PUT", "/box/sub/deep.txt", "deep", nil, 201) }},
			{"an archive in the store", func() {
				if _, err := b.repo.Archive(ctx, b.live("/box/f.txt").ID); err != nil {
					t.Fatal(err)
				}
			}},
			{"a folder deleted", func() { must(b, "DELETE", "/box/sub", "", nil, 204) }},
			{"a file deleted", func() { must(b, "DELETE", "/box/a.txt", "", nil, 204) }},
		}
		for _, s := range steps {
			s.do()
			check(s.name)
		}
		if got := list(a, "/box", nil); strings.Contains(got, "a.txt") || !strings.Contains(got, "e.txt") {
			t.Fatalf("final listing is wrong: %s", got)
		}
	})
}

// TestListingChangesFoldKeepsTheSum checks that folding a folder's change
// rows, which a listing starts once they pile up, keeps their sum: the
// sum is the version every instance's cache compares against.
func TestListingChangesFoldKeepsTheSum(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db)
		alice := e.admin("alice")
		box := e.folder(e.root, "box")
		for i := range 80 {
			e.file(box, "f"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+strings.Repeat("y", i/26), "x")
		}
		state := func() (sum, rows int64) {
			t.Helper()
			err := db.NewSelect().TableExpr("listing_changes").ColumnExpr("COALESCE(SUM(weight), 0), COUNT(*)").
				Where("folder_id = ?", box.ID).Scan(context.Background(), &sum, &rows)
			if err != nil {
				t.Fatal(err)
			}
			return sum, rows
		}
		sum0, rows0 := state()
		if sum0 < 80 || rows0 < 80 {
			t.Fatalf("80 new files left sum %d in %d rows", sum0, rows0)
		}
		var sum, rows int64
		for range 200 {
			if code, _, _ := e.do(alice, "PROPFIND", "/box", nil, map[string]string{"Depth": "1"}); code != 207 {
				t.Fatalf("PROPFIND: %d", code)
			}
			if sum, rows = state(); rows < rows0 {
				break
			}
		}
		if rows >= rows0 || sum != sum0 {
			t.Fatalf("after listings: sum %d in %d rows, want sum %d in fewer than %d rows", sum, rows, sum0, rows0)
		}
	})
}

// TestListingCacheUnderConcurrentWrites lists a folder on one instance
// while another writes into it; once the writers stop, the caching
// instance must list exactly what an uncached one does, whatever order the
// renders, version reads and commits interleaved in.
func TestListingCacheUnderConcurrentWrites(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		a := newEnvWith(t, db, davfs.NewListingCache(8<<20))
		alice := a.admin("alice")
		b := newEnvWith(t, db, nil)
		c := newEnvWith(t, db, nil)
		if code, _, _ := b.do(alice, "MKCOL", "/busy", nil, nil); code != 201 {
			t.Fatalf("MKCOL: %d", code)
		}
		list := func(e *env) string {
			code, _, body := e.do(alice, "PROPFIND", "/busy", nil, map[string]string{"Depth": "1"})
			if code != http.StatusMultiStatus {
				t.Errorf("PROPFIND: %d", code)
			}
			return body
		}
		stop := make(chan struct{})
		var listers sync.WaitGroup
		for range 2 {
			listers.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
						list(a)
					}
				}
			})
		}
		var writers sync.WaitGroup
		for w := range 4 {
			writers.Go(func() {
				for i := range 15 {
					p := fmt.Sprintf("/busy/w%d-%02d.txt", w, i)
					if code, _, _ := b.do(alice, "PUT", p, strings.NewReader(strings.Repeat("x", i)), nil); code != 201 {
						t.Errorf("PUT %s: %d", p, code)
					}
					if i%5 == 4 {
						if code, _, _ := b.do(alice, "DELETE", p, nil, nil); code != 204 {
							t.Errorf("DELETE %s: %d", p, code)
						}
					}
				}
			})
		}
		writers.Wait()
		close(stop)
		listers.Wait()
		want := list(c)
		for i := range 2 {
			if got := list(a); got != want {
				t.Fatalf("listing %d after the writes differs from the uncached one:\n got %s\nwant %s", i+1, got, want)
			}
		}
		if n := strings.Count(want, "<D:href>"); n != 1+4*12 {
			t.Fatalf("listing has %d entries, want %d", n, 1+4*12)
		}
	})
}
