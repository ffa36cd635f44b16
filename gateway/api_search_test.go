package gateway_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/dbtest"
)

type fileList struct {
	Data []fileMeta `json:"data"`
	Next *string    `json:"next"`
}

func (e *apiEnv) search(a auth, rawQuery string) (fileList, result) {
	e.t.Helper()
	r := e.do(a, http.MethodGet, "/api/v1/files?"+rawQuery, nil)
	var l fileList
	if r.status == http.StatusOK {
		r.json(e.t, &l)
	}
	return l, r
}

func names(l fileList) string {
	var out []string
	for _, m := range l.Data {
		out = append(out, m.Name)
	}
	return strings.Join(out, " ")
}

func rqlParam(s string) string { return "rql=" + url.QueryEscape(s) }

func TestSearch(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAPIEnv(t, db)
		dirs := e.folders("/team", "/team-b", "/secret")
		e.grant(as("admin"), dirs["/team"], map[string]any{"group": "registrationstaff", "level": "read"})
		up := func(folder, name, content string, fields ...string) fileMeta {
			m, _ := e.upload(as("admin"), name, content, append([]string{"folder", folder}, fields...)...)
			return m
		}
		up("/team", "ecg-1.pdf", "%PDF-1", "tags", "ecg,cardio", "title", "Resting heart rate study", "source", "holter")
		up("/team", "ecg-2.pdf", "%PDF-22", "tags", "ecg", "title", "Exercise stress test", "phi", "true")
		up("/team", "notes.txt", "some notes here", "tags", "misc", "description", "Patient's notes; O'Brien")
		up("/team-b", "ecg-3.pdf", "%PDF-333", "tags", "ecg", "title", "Heart rhythm b")
		up("/secret", "secret-diagnosis.pdf", "%PDF-4444", "tags", "ecg", "title", "Heart failure")
		for _, dir := range []string{"/team", "/team-b", "/secret"} {
			// The folder markers made by e.folders.
			if err := e.deleteKeep(dir); err != nil {
				t.Fatal(err)
			}
		}

		t.Run("operators", func(t *testing.T) {
			e.t = t
			for _, c := range []struct{ q, want string }{
				{rqlParam("eq(tags,ecg)&sort(+name)"), "ecg-1.pdf ecg-2.pdf ecg-3.pdf secret-diagnosis.pdf"},
				{rqlParam("contains(tags,cardio)"), "ecg-1.pdf"},
				{rqlParam("and(eq(tags,ecg),ne(tags,cardio))&sort(-name)"), "secret-diagnosis.pdf ecg-3.pdf ecg-2.pdf"},
				{rqlParam("in(name,(ecg-1.pdf,notes.txt))&sort(name)"), "ecg-1.pdf notes.txt"},
				{rqlParam("out(tags,(ecg))"), "notes.txt"},
				{rqlParam("gt(size,7)&lt(size,10)&sort(size)"), "ecg-3.pdf secret-diagnosis.pdf"},
				{rqlParam("ge(size,8)&le(size,8)"), "ecg-3.pdf"},
				{rqlParam("like(name,ECG-*)&sort(name)&limit(2,1)"), "ecg-2.pdf ecg-3.pdf"},
				{rqlParam("eq(phi,true)"), "ecg-2.pdf"},
				{rqlParam("eq(source,holter)"), "ecg-1.pdf"},
				{rqlParam("match(title,heart)&sort(name)"), "ecg-1.pdf ecg-3.pdf secret-diagnosis.pdf"},
				{rqlParam("match(description,o'brien)"), "notes.txt"},
				{rqlParam("eq(mimeType,application/pdf)&eq(path,/team/ecg-1.pdf)"), "ecg-1.pdf"},
				{rqlParam("or(eq(name,notes.txt),eq(title,Heart failure))&sort(name)"), "notes.txt secret-diagnosis.pdf"},
				{rqlParam("gt(creationTimestamp,2000-01-01)&eq(name,notes.txt)"), "notes.txt"},
				{rqlParam("lt(updateTimestamp,2000-01-01)"), ""},
				{"eq(tags,ecg)&sort(-size)&limit(1)", "secret-diagnosis.pdf"}, // the query string itself is RQL
				{"name=notes.txt", "notes.txt"},                               // findByName
			} {
				l, r := e.search(as("admin"), c.q)
				if r.status != http.StatusOK || names(l) != c.want {
					t.Errorf("%s: got %q (%s), want %q", c.q, names(l), r, c.want)
				}
			}
		})

		t.Run("approximate match tolerates typos with pg_trgm", func(t *testing.T) {
			e.t = t
			if !e.repo.HasTrigram(context.Background()) {
				t.Skip("no pg_trgm here; match() is a case-insensitive word search")
			}
			l, r := e.search(as("admin"), rqlParam("match(title,resting hart rate)"))
			if names(l) != "ecg-1.pdf" {
				t.Fatalf("typo search: %s", r)
			}
		})

		t.Run("callers see only what they may read", func(t *testing.T) {
			e.t = t
			l, _ := e.search(as("bob"), rqlParam("eq(tags,ecg)&sort(name)"))
			if names(l) != "ecg-1.pdf ecg-2.pdf" {
				t.Fatalf("bob sees %q", names(l))
			}
			for _, q := range []string{rqlParam("like(name,*secret*)"), rqlParam("match(title,failure)"), "name=secret-diagnosis.pdf",
				rqlParam("eq(name,ecg-3.pdf)")} {
				l, r := e.search(as("bob"), q)
				if len(l.Data) != 0 || strings.Contains(string(r.body), "secret") || strings.Contains(string(r.body), "ecg-3") {
					t.Fatalf("%s leaks to bob: %s", q, r.body)
				}
			}
			if l, _ := e.search(as("dave"), ""); len(l.Data) != 0 {
				t.Fatalf("dave sees %q", names(l))
			}
			if l, r := e.search(anonymous, ""); r.status != http.StatusOK || len(l.Data) != 0 {
				t.Fatalf("anonymous sees %s", r)
			}
			all, _ := e.search(as("admin"), "limit=100")
			if len(all.Data) != 5 {
				t.Fatalf("admin sees %q", names(all))
			}
			// A file token sees its one file.
			m, tok := e.upload(as("admin"), "tokfile.txt", "t", "folder", "/secret")
			if l, _ := e.search(bearer(tok), ""); names(l) != "tokfile.txt" || l.Data[0].ID != m.ID {
				t.Fatalf("token sees %q", names(l))
			}
			e.want(e.do(as("admin"), http.MethodDelete, "/api/v1/files/"+m.ID+"?purge=true", nil), http.StatusNoContent)
		})

		t.Run("pages with an opaque cursor", func(t *testing.T) {
			e.t = t
			for _, sort := range []string{"sort=name", "sort=size&order=desc", "sort=-creationTimestamp", "sort=updateTimestamp"} {
				var got []string
				q := sort + "&limit=2"
				for i := 0; i < 5; i++ {
					l, r := e.search(as("admin"), q)
					e.want(r, http.StatusOK)
					got = append(got, names(l))
					if l.Next == nil {
						break
					}
					q = sort + "&limit=2&cursor=" + url.QueryEscape(*l.Next)
				}
				seen := strings.Fields(strings.Join(got, " "))
				if len(seen) != 5 {
					t.Fatalf("%s: pages %q", sort, got)
				}
				uniq := map[string]bool{}
				for _, s := range seen {
					uniq[s] = true
				}
				if len(uniq) != 5 {
					t.Fatalf("%s: duplicates across pages %q", sort, got)
				}
			}
			l, _ := e.search(as("admin"), "sort=name&limit=2")
			// A cursor of another query is refused.
			_, r := e.search(as("admin"), "sort=size&limit=2&cursor="+url.QueryEscape(*l.Next))
			e.want(r, http.StatusBadRequest)
			_, r = e.search(as("admin"), "cursor=garbage")
			e.want(r, http.StatusBadRequest)
		})

		t.Run("select, findFirst, status", func(t *testing.T) {
			e.t = t
			r := e.do(as("admin"), http.MethodGet, "/api/v1/files?"+rqlParam("eq(name,notes.txt)&select(id,name)"), nil)
			e.want(r, http.StatusOK)
			if strings.Contains(string(r.body), "mimeType") || !strings.Contains(string(r.body), `"name":"notes.txt"`) {
				t.Fatalf("select: %s", r.body)
			}
			r = e.do(as("admin"), http.MethodGet, "/api/v1/files/first?"+rqlParam("eq(tags,ecg)&sort(-size)"), nil)
			e.want(r, http.StatusOK)
			var first fileMeta
			r.json(t, &first)
			if first.Name != "secret-diagnosis.pdf" || first.Tokens == nil {
				t.Fatalf("findFirst: %s", r.body)
			}
			e.want(e.do(as("admin"), http.MethodGet, "/api/v1/files/first?"+rqlParam("eq(name,none)"), nil), http.StatusNotFound)
			e.want(e.do(as("admin"), http.MethodDelete, "/api/v1/files/"+first.ID, nil), http.StatusNoContent)
			if l, _ := e.search(as("admin"), rqlParam("eq(name,secret-diagnosis.pdf)")); len(l.Data) != 0 {
				t.Fatal("archived file listed")
			}
			l, _ := e.search(as("admin"), rqlParam("eq(status,archived)"))
			if names(l) != "secret-diagnosis.pdf" || l.Data[0].Status != "archived" {
				t.Fatalf("status=archived: %q", names(l))
			}
		})

		t.Run("malformed RQL gets 400 with the position", func(t *testing.T) {
			e.t = t
			for q, pos := range map[string]string{"eq(name,a": "position 9", "eq(nope,a)": "position 3",
				"eq(size,big)": "position 8", "sort(tags)": "position 5", "foo(x)": "position 0"} {
				_, r := e.search(as("admin"), rqlParam(q))
				var body struct {
					Error struct{ Code, Message string }
				}
				e.want(r, http.StatusBadRequest)
				r.json(t, &body)
				if body.Error.Code != "invalid_rql" || !strings.Contains(body.Error.Message, pos) {
					t.Errorf("%s: %s, want %s", q, r.body, pos)
				}
			}
		})

		t.Run("injection attempts", func(t *testing.T) {
			e.t = t
			attempts := []string{
				"eq(name,x' OR '1'='1)", "eq(name,x%27%20OR%201%3D1%20--)", "eq(name,a);DROP TABLE nodes;--)",
				"like(name,%25' OR ''=')", "in(name,a,b') OR ('1'='1)", "eq(tags,x')) OR 1=1 --)", "match(title,' OR 1=1 --)",
				"sort(name;DROP TABLE nodes)", "eq(title,\\' OR 1=1 --)", "eq(size,1 OR 1=1)", "eq(name,? OR 1=1)",
				"eq(name%3B%20DROP%20TABLE%20audit,a)", "eq(name,a%00b)", "eq(name,$1)",
			}
			for _, q := range attempts {
				for _, who := range []auth{as("admin"), as("bob")} {
					l, r := e.search(who, rqlParam(q))
					if r.status != http.StatusOK && r.status != http.StatusBadRequest {
						t.Fatalf("%s: %s", q, r)
					}
					if len(l.Data) != 0 {
						t.Fatalf("%s matched %q", q, names(l))
					}
				}
			}
			all, _ := e.search(as("admin"), "limit=100")
			if len(all.Data) != 4 {
				t.Fatalf("after injections admin sees %q", names(all))
			}
			var n int
			if err := e.db.NewRaw("SELECT count(*) FROM audit").Scan(context.Background(), &n); err != nil || n == 0 {
				t.Fatalf("audit table: %d, %v", n, err)
			}
		})

		e.t = t
		e.assertNoSecretsLogged()
	})
}

// deleteKeep purges the .keep file e.folders left in a folder.
func (e *apiEnv) deleteKeep(dir string) error {
	n, err := e.repo.LiveByPath(context.Background(), dir+"/.keep")
	if err != nil {
		return err
	}
	e.want(e.do(as("admin"), http.MethodDelete, "/api/v1/files/"+n.ID+"?purge=true", nil), http.StatusNoContent)
	return nil
}
