package gateway_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"golang.org/x/text/unicode/norm"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
	"github.com/filegate/filegate/tus"
)

// The access matrix of issue #8: every operation of every door, for every
// kind of caller, on every kind of file, under several spellings of each
// path, compared with the independent oracle of oracle_model_test.go.
// Zero differences are allowed. FILEGATE_CHAOS=long runs every spelling
// of every cell; the short run gives each cell one spelling in turn, so
// every spelling is still exercised by every door.

func oracleLong() bool { return os.Getenv("FILEGATE_CHAOS") == "long" }

// ocEnv is a real server on 127.0.0.1 with all three doors and the admin
// API, a real database, the fixture, and the oracle's picture of it.
type ocEnv struct {
	t     *testing.T
	ts    *httptest.Server
	hc    *http.Client
	repo  *model.Repo
	authz *policy.Authorizer
	o     *oracle
	subs  []*ocSubj
	by    map[string]*ocSubj // subjects by name
	files map[string]*oNode  // fixture nodes by path

	om    sync.Mutex // the oracle, while API cells run side by side
	mu    sync.Mutex
	cells map[string]int // per door
	seen  map[string]int // cells per door and expected status
	diffs []string
}

// ocSubj is a matrix subject: the oracle's view and how it authenticates
// (Basic for WebDAV clients, Bearer for tokens elsewhere).
type ocSubj struct {
	*oSubj
	password string
	secret   string
	file     *oNode // a token's file
}

func (s *ocSubj) set(r *http.Request, dav bool) {
	switch {
	case s.anon:
	case s.secret != "" && dav:
		r.SetBasicAuth("token", s.secret)
	case s.secret != "":
		r.Header.Set("Authorization", "Bearer "+s.secret)
	default:
		r.SetBasicAuth(s.user, s.password)
	}
}

type ocResp struct {
	status int
	header http.Header
	body   []byte
}

func (e *ocEnv) send(s *ocSubj, dav bool, method, rawURL string, body []byte, hdr ...string) ocResp {
	e.t.Helper()
	if !strings.HasPrefix(rawURL, "http") {
		rawURL = e.ts.URL + rawURL
	}
	req, err := http.NewRequest(method, rawURL, bytes.NewReader(body))
	if err != nil {
		e.t.Errorf("%s %s: %v", method, rawURL, err)
		return ocResp{status: -1}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if s != nil {
		s.set(req, dav)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Errorf("%s %s: %v", method, rawURL, err) // workers may not stop the test
		return ocResp{status: -1}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return ocResp{resp.StatusCode, resp.Header, b}
}

func (e *ocEnv) sendJSON(s *ocSubj, method, path string, v any) ocResp {
	e.t.Helper()
	b, _ := json.Marshal(v)
	return e.send(s, false, method, path, b, "Content-Type", "application/json")
}

// check records one cell: a difference unless got equals want.
func (e *ocEnv) check(door string, want, got int, row string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cells[door]++
	e.seen[fmt.Sprintf("%s:%d", door, want)]++
	if want != got {
		e.diffs = append(e.diffs, fmt.Sprintf("%-4s %s: want %d, got %d", door, row, want, got))
	}
}

func (e *ocEnv) must(r ocResp, status int, what string) {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("%s: %d, want %d: %s", what, r.status, status, r.body)
	}
}

func newOracleEnv(t *testing.T, db *bun.DB) *ocEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	env := newTestServer(t, db, "", gateway.Config{}, nil)
	srv := env.srv
	if err := srv.MountAPI(gateway.APIConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := srv.MountAdmin(gateway.AdminDeps{Policy: env.authz}); err != nil {
		t.Fatal(err)
	}
	srv.HandleDoor(gateway.DAVPrefix+"/", srv.DAVHandler())
	door, err := srv.MountTus(ctx, tus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { door.Close() })
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	e := &ocEnv{t: t, ts: ts, repo: env.repo, authz: env.authz, by: map[string]*ocSubj{}, files: map[string]*oNode{},
		cells: map[string]int{}, seen: map[string]int{},
		hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: time.Minute}}
	t.Cleanup(e.hc.CloseIdleConnections)
	root, err := env.repo.NodeByID(ctx, model.RootID)
	if err != nil {
		t.Fatal(err)
	}
	e.o = newOracle(root.ID)
	e.files["/"] = e.o.root

	for _, u := range []string{"admin", "alice", "bob", "carol", "dave"} {
		if _, err := env.repo.CreateUser(ctx, u, userPW(u)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := env.repo.CreateGroup(ctx, "staff", "ward staff"); err != nil {
		t.Fatal(err)
	}
	if err := env.authz.Apply(ctx, policy.Change{Add: [][]string{
		policy.Membership("user:admin", policy.AdminRole), policy.Membership("user:carol", "group:staff")}}); err != nil {
		t.Fatal(err)
	}
	e.addSubj(&ocSubj{oSubj: &oSubj{name: "anonymous", anon: true}})
	e.addSubj(&ocSubj{oSubj: &oSubj{name: "admin", user: "admin", admin: true}, password: userPW("admin")})
	for _, u := range []string{"alice", "bob"} {
		e.addSubj(&ocSubj{oSubj: &oSubj{name: u, user: u}, password: userPW(u)})
	}
	e.addSubj(&ocSubj{oSubj: &oSubj{name: "carol", user: "carol", groups: []string{"staff"}}, password: userPW("carol")})
	e.buildFixture()
	return e
}

func (e *ocEnv) addSubj(s *ocSubj) {
	e.subs = append(e.subs, s)
	e.by[s.name] = s
}

// upload creates a file through the files API and records it.
func (e *ocEnv) upload(as *ocSubj, folder, name string, phi bool) (*oNode, string) {
	e.t.Helper()
	q := url.Values{"name": {name}, "folder": {folder}}
	if phi {
		q.Set("phi", "true")
	}
	r := e.send(as, false, "POST", "/api/v1/files?"+q.Encode(), []byte("content of "+name),
		"Content-Type", "application/octet-stream")
	e.must(r, 201, "upload "+folder+"/"+name)
	var m struct {
		ID     string
		Tokens []struct{ ID, Token string }
	}
	json.Unmarshal(r.body, &m)
	parent := e.files[folder]
	if parent == nil {
		parent = e.folder(folder)
	}
	n := e.o.add(parent, norm.NFC.String(name), m.ID, false)
	n.phi = phi
	e.files[n.path] = n
	e.o.grant("token:"+m.Tokens[0].ID, lvlFull, n)
	return n, m.Tokens[0].Token
}

// folder records a folder the first upload into it created.
func (e *ocEnv) folder(p string) *oNode {
	e.t.Helper()
	n, err := e.repo.LiveByPath(context.Background(), p)
	if err != nil {
		e.t.Fatal(err)
	}
	f := e.o.add(e.files[parentPath(p)], baseName(p), n.ID, true)
	e.files[p] = f
	return f
}

func (e *ocEnv) grantAPI(as *ocSubj, n *oNode, who, name, lvl string) {
	e.t.Helper()
	e.must(e.sendJSON(as, "POST", "/api/v1/files/"+n.id+"/grants", map[string]string{who: name, "level": lvl}), 201,
		"grant "+lvl+" on "+n.path)
	e.o.grant(who+":"+name, map[string]level{"metadata": lvlMetadata, "read": lvlRead, "full": lvlFull}[lvl], n)
}

// tokenSubj mints a token of level on n and makes it a subject.
func (e *ocEnv) tokenSubj(as *ocSubj, n *oNode, lvl string) {
	e.t.Helper()
	r := e.sendJSON(as, "POST", "/api/v1/files/"+n.id+"/tokens", map[string]string{"accessLevel": lvl})
	e.must(r, 201, "mint token")
	var tok struct{ ID, Token string }
	json.Unmarshal(r.body, &tok)
	l := lvlRead
	if lvl == "full" {
		l = lvlFull
	}
	e.o.grant("token:"+tok.ID, l, n)
	e.addSubj(&ocSubj{oSubj: &oSubj{name: "token(" + lvl + " " + n.path + ")", token: tok.ID}, secret: tok.Token, file: n})
}

// buildFixture makes the files of the matrix: alice's own files (one with
// a non-ASCII name, one phi, one archived, one public, ones shared with
// bob and with the staff group, one bob may only see), bob's file, the
// sibling folders /a (carol's) and /a-b, and the staff folder.
func (e *ocEnv) buildFixture() {
	admin, alice, bob, carol := e.by["admin"], e.by["alice"], e.by["bob"], e.by["carol"]
	for _, p := range []string{"/alice", "/bob", "/a", "/a-b", "/staff"} {
		e.upload(admin, p, ".keep", false)
	}
	e.grantAPI(admin, e.files["/alice"], "user", "alice", "full")
	e.grantAPI(admin, e.files["/bob"], "user", "bob", "full")
	e.grantAPI(admin, e.files["/a"], "user", "carol", "full")
	e.grantAPI(admin, e.files["/staff"], "group", "staff", "read")
	own, _ := e.upload(alice, "/alice", "own.txt", false)
	e.upload(alice, "/alice", "Café.txt", false)
	phi, _ := e.upload(alice, "/alice", "phi.txt", true)
	arch, _ := e.upload(alice, "/alice", "archived.txt", false)
	sb, _ := e.upload(alice, "/alice", "shared-bob.txt", false)
	e.grantAPI(alice, sb, "user", "bob", "read")
	ss, _ := e.upload(alice, "/alice", "shared-staff.txt", false)
	e.grantAPI(alice, ss, "group", "staff", "full")
	pub, _ := e.upload(alice, "/alice", "public.txt", false)
	e.must(e.sendJSON(alice, "PUT", "/api/v1/files/"+pub.id+"/public", map[string]bool{"public": true}), 200, "public")
	e.o.grant("anyone", lvlRead, pub)
	meta, _ := e.upload(alice, "/alice", "meta.txt", false)
	e.grantAPI(alice, meta, "user", "bob", "metadata")
	e.upload(bob, "/bob", "foreign.txt", false)
	e.upload(carol, "/a", "x.txt", false)
	e.upload(admin, "/a-b", "x.txt", false)
	e.upload(admin, "/staff", "s.txt", false)
	e.tokenSubj(alice, own, "read")
	e.tokenSubj(alice, own, "full")
	e.tokenSubj(alice, phi, "read")
	e.tokenSubj(alice, phi, "full")
	e.tokenSubj(alice, arch, "read")
	e.must(e.send(alice, false, "DELETE", "/api/v1/files/"+arch.id, nil), 204, "archive")
	e.o.archive(arch)
}

// spelling writes a canonical path the way a client might: the door must
// treat all but "case" as the same path (README: "//", "/./" and a
// trailing slash are dropped, %2F is a slash, names are compared in NFC
// and with their letter case).
type spelling struct {
	name string
	// url is the path as sent in a URL; canon what it names.
	url   func(p string) string
	canon func(p string) string
}

func escapeSegs(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

func same(p string) string { return p }

var spellings = []spelling{
	{"plain", escapeSegs, same},
	{"//", func(p string) string { return strings.ReplaceAll(escapeSegs(p), "/", "//") }, same},
	{"/./", func(p string) string { return "/." + strings.ReplaceAll(escapeSegs(p), "/", "/./") }, same},
	{"%2F", func(p string) string {
		e := escapeSegs(p)
		if i := strings.LastIndexByte(e, '/'); i > 0 {
			return e[:i] + "%2F" + e[i+1:]
		}
		return e
	}, same},
	// A slash encoded twice is decoded once by HTTP and would become a
	// slash if a layer decoded again: refused (400, canon "").
	{"%252F", func(p string) string {
		e := escapeSegs(p)
		if i := strings.LastIndexByte(e, '/'); i > 0 {
			return e[:i] + "%252F" + e[i+1:]
		}
		return e
	}, func(p string) string {
		if strings.LastIndexByte(p, '/') > 0 {
			return ""
		}
		return p
	}},
	{"trailing/", func(p string) string { return strings.TrimSuffix(escapeSegs(p), "/") + "/" }, same},
	{"case", func(p string) string { return escapeSegs(swapCase(p)) }, swapCase},
	{"NFD", func(p string) string { return escapeSegs(norm.NFD.String(p)) }, same},
}

// valueSpelling spells a folder path given as a value (tus metadata, a
// query parameter, a JSON field) rather than in a URL: nothing decodes
// it, so "%2F" stays in the name, which is refused as a double-encoded
// slash (canon "").
func valueSpelling(sp spelling, f string) (raw, canon string) {
	raw, canon = sp.canon(f), sp.canon(f)
	switch sp.name {
	case "//":
		raw = strings.ReplaceAll(f, "/", "//")
	case "/./":
		raw = "/." + strings.ReplaceAll(f, "/", "/./")
	case "trailing/":
		raw = strings.TrimSuffix(f, "/") + "/"
	case "NFD":
		raw = norm.NFD.String(f)
	case "%2F":
		if i := strings.LastIndexByte(f, '/'); i > 0 {
			raw, canon = f[:i]+"%2F"+f[i+1:], ""
		}
	case "%252F":
		// Not a slash even when decoded once: a literal name.
		raw, canon = f, f
		if i := strings.LastIndexByte(f, '/'); i > 0 {
			raw, canon = f[:i]+"%252F"+f[i+1:], f[:i]+"%252F"+f[i+1:]
		}
	}
	return raw, canon
}

// swapCase upper-cases the last name of a path (lower-cases it when it
// has no lower-case letters).
func swapCase(p string) string {
	if p == "/" {
		return p
	}
	i := strings.LastIndexByte(p, '/')
	b := p[i+1:]
	up := strings.ToUpper(b)
	if up == b {
		up = strings.ToLower(b)
	}
	return p[:i+1] + up
}

// targets are the fixture's paths plus names that do not exist.
func (e *ocEnv) targets() []string {
	var out []string
	for p := range e.files {
		if baseName(p) != ".keep" || oracleLong() {
			out = append(out, p)
		}
	}
	out = append(out, "/alice/missing.txt", "/nowhere/x.txt")
	sort.Strings(out)
	return out
}

const lockBody = `<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>`

const propPatchBody = `<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:x"><D:set><D:prop><Z:seen>1</Z:seen></D:prop></D:set></D:propertyupdate>`

// failingIf is an If header no lock matches: a write that passes
// authorization then fails its precondition (412), changing nothing.
const failingIf = "(<urn:uuid:00000000-0000-4000-8000-000000000000>)"

var davMethods = []string{"OPTIONS", "PROPFIND", "PROPFIND1", "GET", "HEAD", "PUT", "MKCOL", "PROPPATCH", "LOCK", "UNLOCK",
	"DELETE", "MOVE", "COPY"}

// davCell sends one WebDAV request and compares it with the oracle.
func (e *ocEnv) davCell(s *ocSubj, method, p string, sp spelling) {
	canon := sp.canon(p)
	dst := ""
	var hdr []string
	var body []byte
	m := method
	switch method {
	case "PROPFIND":
		hdr = []string{"Depth", "0"}
	case "PROPFIND1":
		m, hdr = "PROPFIND", []string{"Depth", "1"}
	case "PUT":
		hdr, body = []string{"If-Match", `"no-such-etag"`}, []byte("new")
	case "MKCOL", "DELETE":
		hdr = []string{"If", failingIf}
	case "LOCK":
		hdr, body = []string{"If", failingIf, "Content-Type", "application/xml"}, []byte(lockBody)
	case "UNLOCK":
		hdr = []string{"Lock-Token", "<urn:uuid:00000000-0000-4000-8000-000000000001>"}
	case "PROPPATCH":
		hdr, body = []string{"Content-Type", "application/xml"}, []byte(propPatchBody)
	case "MOVE", "COPY":
		dst = "/bob/moved-" + baseName(canon)
		if method == "COPY" {
			dst = "/a/copied-" + baseName(canon)
		}
		if canon == "/" {
			dst = "/bob/moved-root"
		}
		hdr = []string{"If", failingIf, "Destination", e.ts.URL + gateway.DAVPrefix + escapeSegs(dst)}
	}
	want := 400
	if canon != "" {
		want = e.o.davExpect(s.oSubj, method, canon, dst)
	}
	r := e.send(s, true, m, gateway.DAVPrefix+sp.url(p), body, hdr...)
	row := fmt.Sprintf("%-9s %-18s %-26s [%s]", method, s.name, p, sp.name)
	got := r.status
	fixed := canon == "/" || (dst != "" && strings.HasPrefix(dst, canon+"/")) // plain 403s of RFC 4918
	if got == 403 && want == 403 && method != "HEAD" && !fixed && !bytes.Contains(r.body, []byte("need-privileges")) {
		got = -403 // a refusal must carry a DAV error body
	}
	e.check("dav", want, got, row)
	if method == "PROPFIND1" && want == 207 && got == 207 {
		e.checkListing(s, canon, r.body, row)
	}
}

// checkListing compares the hrefs of a Depth 1 PROPFIND with the oracle.
func (e *ocEnv) checkListing(s *ocSubj, p string, body []byte, row string) {
	var ms struct {
		Responses []struct {
			Href string `xml:"href"`
		} `xml:"response"`
	}
	if err := xml.Unmarshal(body, &ms); err != nil {
		e.check("dav", 207, -207, row+" listing is not XML")
		return
	}
	got := map[string]bool{}
	for _, r := range ms.Responses {
		h, _ := url.PathUnescape(r.Href)
		h = strings.TrimSuffix(strings.TrimPrefix(h, gateway.DAVPrefix), "/")
		if h == "" {
			h = "/"
		}
		if h != p {
			got[h] = true
		}
	}
	want := e.o.davListing(s.oSubj, p)
	known := map[string]bool{}
	for _, n := range e.o.nodes {
		known[n.path] = true
	}
	for h := range got {
		if known[h] && !want[h] {
			e.check("dav", 0, 1, row+" lists "+h+" it may not read")
		}
	}
	for h := range want {
		if !got[h] {
			e.check("dav", 1, 0, row+" does not list "+h)
		}
	}
}

// run calls fn for each job on a few workers: requests that change
// nothing may overlap, as real clients' do.
func run[T any](jobs []T, fn func(T)) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				fn(jobs[i])
			}
		})
	}
	wg.Wait()
}

func (e *ocEnv) davMatrix() {
	type job struct {
		s      *ocSubj
		method string
		p      string
		sp     spelling
	}
	var jobs []job
	i := 0
	for _, s := range e.subs {
		for _, p := range e.targets() {
			for _, m := range davMethods {
				if oracleLong() {
					for _, sp := range spellings {
						jobs = append(jobs, job{s, m, p, sp})
					}
					continue
				}
				jobs = append(jobs, job{s, m, p, spellings[i%len(spellings)]})
				i++
			}
		}
	}
	run(jobs, func(j job) { e.davCell(j.s, j.method, j.p, j.sp) })
}

// tusMatrix creates an upload as every subject into every folder (and a
// file, a missing folder, invalid spellings), then has every subject
// HEAD, PATCH and DELETE every upload that was created.
func (e *ocEnv) tusMatrix() {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	type upload struct {
		owner *ocSubj
		loc   string
	}
	var ups []upload
	folders := []string{"/", "/alice", "/bob", "/a", "/a-b", "/staff", "/alice/own.txt", "/nowhere"}
	n := 0
	for _, s := range e.subs {
		for _, f := range folders {
			for _, sp := range spellings {
				if !oracleLong() && sp.name != "plain" && (n%len(spellings) != 0) {
					n++
					continue
				}
				n++
				raw, canon := valueSpelling(sp, f)
				want := e.o.tusCreate(s.oSubj, canon)
				r := e.send(s, false, "POST", gateway.TusPrefix, nil, "Tus-Resumable", "1.0.0", "Upload-Length", "5",
					"Upload-Metadata", "filename "+b64(fmt.Sprintf("up-%d.txt", n))+",folder "+b64(raw))
				e.check("tus", want, r.status, fmt.Sprintf("%-9s %-18s %-26s [%s]", "create", s.name, f, sp.name))
				if r.status == 201 && len(ups) < 3*len(e.subs) {
					ups = append(ups, upload{s, r.header.Get("Location")})
				}
			}
		}
	}
	for _, u := range ups {
		for _, s := range e.subs {
			own := s == u.owner
			row := func(op string) string {
				return fmt.Sprintf("%-9s %-18s upload of %s", op, s.name, u.owner.name)
			}
			want := map[bool]int{true: 200, false: 404}[own]
			if s.anon {
				want = 401
			}
			r := e.send(s, false, "HEAD", u.loc, nil, "Tus-Resumable", "1.0.0")
			e.check("tus", want, r.status, row("HEAD"))
			want = map[bool]int{true: 204, false: 404}[own]
			if s.anon {
				want = 401
			}
			r = e.send(s, false, "PATCH", u.loc, []byte("ab"), "Tus-Resumable", "1.0.0", "Upload-Offset", "0",
				"Content-Type", "application/offset+octet-stream")
			e.check("tus", want, r.status, row("PATCH"))
		}
		for _, s := range e.subs {
			if s == u.owner {
				continue
			}
			want := 404
			if s.anon {
				want = 401
			}
			r := e.send(s, false, "DELETE", u.loc, nil, "Tus-Resumable", "1.0.0")
			e.check("tus", want, r.status, fmt.Sprintf("%-9s %-18s upload of %s", "DELETE", s.name, u.owner.name))
		}
		r := e.send(u.owner, false, "DELETE", u.loc, nil, "Tus-Resumable", "1.0.0")
		e.check("tus", 204, r.status, fmt.Sprintf("%-9s %-18s upload of %s", "DELETE", u.owner.name, u.owner.name))
	}
}

// TestAccessMatrix is issue #8's matrix on SQLite and PostgreSQL.
func TestAccessMatrix(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		begin, start := time.Now(), time.Now()
		e := newOracleEnv(t, db)
		var phases []string
		for _, ph := range []struct {
			name string
			fn   func()
		}{{"fixture", func() {}}, {"dav", e.davMatrix}, {"tus", e.tusMatrix}, {"api", e.apiMatrix}, {"purge", e.purgeMatrix}} {
			ph.fn()
			phases = append(phases, fmt.Sprintf("%s %s", ph.name, time.Since(start).Round(time.Millisecond)))
			start = time.Now()
		}
		t.Logf("phases: %s", strings.Join(phases, ", "))
		total := 0
		for _, c := range e.cells {
			total += c
		}
		sort.Strings(e.diffs)
		for _, d := range e.diffs {
			t.Error(d)
		}
		var keys []string
		for k := range e.seen {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var hist strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&hist, " %s=%d", k, e.seen[k])
		}
		t.Logf("expected answers:%s", hist.String())
		t.Logf("RELIABILITY authz_cells=%d differences=%d (dav=%d tus=%d api=%d, %d subjects, %s)",
			total, len(e.diffs), e.cells["dav"], e.cells["tus"], e.cells["api"], len(e.subs), time.Since(begin).Round(time.Millisecond))
	})
}
