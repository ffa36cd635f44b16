package gateway_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

// folders creates folders as admin through an upload's folder path
// (missing folders are created) and returns their ids by path.
func (e *apiEnv) folders(paths ...string) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, p := range paths {
		m, _ := e.upload(as("admin"), ".keep", "", "folder", p)
		n, err := e.repo.NodeByID(context.Background(), m.ID)
		if err != nil {
			e.t.Fatal(err)
		}
		out[p] = n.ParentID
	}
	return out
}

func (e *apiEnv) grant(a auth, nodeID string, body map[string]any) {
	e.t.Helper()
	e.want(e.doJSON(a, http.MethodPost, "/api/v1/files/"+nodeID+"/grants", body), http.StatusCreated)
}

// TestSeedScenarios walks the nine scenarios of the services filegate
// replaces, end to end over HTTP, on SQLite and PostgreSQL.
func TestSeedScenarios(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAPIEnv(t, db)
		dirs := e.folders("/alice", "/clinic/queue", "/a", "/a-b")
		e.grant(as("admin"), dirs["/alice"], map[string]any{"user": "alice", "level": "full"})

		var report fileMeta
		var reportToken string
		t.Run("1 upload with tags", func(t *testing.T) {
			e.t = t
			report, reportToken = e.upload(as("alice"), "myReport.pdf", "%PDF-1.4 ecg",
				"folder", "/alice", "tags", "ecg-report", "tags", "cardio,2024", "title", "ECG of Monday",
				"description", "resting ECG", "source", "holter")
			if report.MimeType != "application/pdf" || report.Size != 12 || report.Path != "/alice/myReport.pdf" ||
				report.Status != "completed" || report.Title != "ECG of Monday" || report.Source != "holter" {
				t.Fatalf("metadata: %+v", report)
			}
			if !slices.Equal(report.Tags, []string{"ecg-report", "cardio", "2024"}) {
				t.Fatalf("tags = %q", report.Tags)
			}
			sum := sha256.Sum256([]byte("%PDF-1.4 ecg"))
			if report.SHA256 != hex.EncodeToString(sum[:]) {
				t.Fatalf("sha256 = %s", report.SHA256)
			}
			r := e.do(bearer(reportToken), http.MethodGet, "/api/v1/files/"+report.ID+"/content", nil)
			if r.status != http.StatusOK || string(r.body) != "%PDF-1.4 ecg" {
				t.Fatalf("content: %s", r)
			}
			var list struct{ Data []fileMeta }
			r = e.do(as("alice"), http.MethodGet, "/api/v1/files?rql="+url.QueryEscape("eq(tags,ecg-report)"), nil)
			e.want(r, http.StatusOK)
			r.json(t, &list)
			if len(list.Data) != 1 || list.Data[0].ID != report.ID {
				t.Fatalf("search by tag: %s", r.body)
			}
			// A raw body with the fields as query parameters.
			r = e.do(as("alice"), http.MethodPost, "/api/v1/files?name=notes.txt&folder=/alice&tags=a,b&phi=true",
				strings.NewReader("raw notes"), "Content-Type", "application/octet-stream")
			e.want(r, http.StatusCreated)
			var raw fileMeta
			r.json(t, &raw)
			if raw.Name != "notes.txt" || !raw.PHI || !slices.Equal(raw.Tags, []string{"a", "b"}) || raw.MimeType != "text/plain; charset=utf-8" {
				t.Fatalf("raw upload: %s", r.body)
			}
			e.secrets = append(e.secrets, (*raw.Tokens)[0].Token)
		})

		var readToken string
		t.Run("2 read token", func(t *testing.T) {
			e.t = t
			_, readToken = e.mintToken(bearer(reportToken), report.ID, "read")
			r := e.do(bearer(readToken), http.MethodGet, "/api/v1/files/"+report.ID+"/content", nil)
			if r.status != http.StatusOK || string(r.body) != "%PDF-1.4 ecg" {
				t.Fatalf("read token content: %s", r)
			}
			r = e.do(bearer(readToken), http.MethodGet, "/api/v1/files/"+report.ID, nil)
			e.want(r, http.StatusOK)
			if strings.Contains(string(r.body), `"tokens"`) {
				t.Fatalf("read token sees tokens: %s", r.body)
			}
			// The token also works as a Basic password, for WebDAV clients.
			basic := func(r *http.Request) { r.SetBasicAuth("anyone", readToken) }
			e.want(e.do(basic, http.MethodGet, "/api/v1/files/"+report.ID+"/content", nil), http.StatusOK)
			e.want(e.do(bearer(readToken), http.MethodDelete, "/api/v1/files/"+report.ID, nil), http.StatusForbidden)
			e.want(e.doJSON(bearer(readToken), http.MethodPost, "/api/v1/files/"+report.ID+"/tokens",
				map[string]any{"accessLevel": "read"}), http.StatusForbidden)
			e.want(e.doJSON(bearer(readToken), http.MethodPost, "/api/v1/files/"+report.ID+"/grants",
				map[string]any{"user": "dave", "level": "read"}), http.StatusForbidden)
			e.want(e.do(bearer(readToken), http.MethodGet, "/api/v1/files/"+report.ID+"/tokens", nil), http.StatusForbidden)
			// The full token sees the token list, without any secret.
			r = e.do(bearer(reportToken), http.MethodGet, "/api/v1/files/"+report.ID, nil)
			var m fileMeta
			r.json(t, &m)
			if m.Tokens == nil || len(*m.Tokens) != 2 || strings.Contains(string(r.body), readToken) ||
				strings.Contains(string(r.body), reportToken) {
				t.Fatalf("full token metadata: %s", r.body)
			}
			// A token of one file is nothing to another.
			other, _ := e.upload(as("alice"), "other.txt", "x", "folder", "/alice")
			e.want(e.do(bearer(readToken), http.MethodGet, "/api/v1/files/"+other.ID+"/content", nil), http.StatusForbidden)
		})

		t.Run("3 last full token", func(t *testing.T) {
			e.t = t
			m, full := e.upload(as("alice"), "last.txt", "x", "folder", "/alice")
			fullID := (*m.Tokens)[0].ID
			r := e.do(bearer(full), http.MethodDelete, "/api/v1/files/"+m.ID+"/tokens/"+fullID, nil)
			e.want(r, http.StatusConflict)
			secondID, _ := e.mintToken(bearer(full), m.ID, "full")
			// Two concurrent deletes of the last two full tokens (by alice,
			// who holds full on the folder) leave one.
			var wg sync.WaitGroup
			codes := make([]int, 2)
			for i, id := range []string{fullID, secondID} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req, _ := http.NewRequest(http.MethodDelete, e.ts.URL+"/api/v1/files/"+m.ID+"/tokens/"+id, nil)
					req.SetBasicAuth("alice", userPW("alice"))
					resp, err := http.DefaultClient.Do(req)
					if err == nil {
						codes[i] = resp.StatusCode
						resp.Body.Close()
					}
				}()
			}
			wg.Wait()
			slices.Sort(codes)
			if codes[0] != http.StatusNoContent || codes[1] != http.StatusConflict {
				t.Fatalf("concurrent deletes answered %v, want one 204 and one 409", codes)
			}
			tokens, err := e.repo.Tokens(context.Background(), m.ID)
			if err != nil || len(tokens) != 1 || tokens[0].Level != "full" {
				t.Fatalf("tokens left: %d, %v", len(tokens), err)
			}
		})

		t.Run("4 archive, restore, purge", func(t *testing.T) {
			e.t = t
			m, full := e.upload(as("alice"), "scan.dcm", "DICOM-ish bytes", "folder", "/alice")
			n, err := e.repo.NodeByID(context.Background(), m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !blobOnDisk(t, e.blobDir, n.BlobKey) {
				t.Fatal("blob not found on disk before purge")
			}
			inList := func() bool {
				var list struct{ Data []fileMeta }
				r := e.do(as("alice"), http.MethodGet, "/api/v1/files?name=scan.dcm", nil)
				e.want(r, http.StatusOK)
				r.json(t, &list)
				return len(list.Data) == 1
			}
			davGet := func() int {
				return e.do(as("alice"), http.MethodGet, "/dav/alice/scan.dcm", nil).status
			}
			if !inList() || davGet() != http.StatusOK {
				t.Fatal("new file not visible")
			}
			e.want(e.do(bearer(full), http.MethodDelete, "/api/v1/files/"+m.ID, nil), http.StatusNoContent)
			if inList() || davGet() != http.StatusNotFound {
				t.Fatal("archived file still visible in the list or over WebDAV")
			}
			prop := e.do(as("alice"), "PROPFIND", "/dav/alice/", nil, "Depth", "1")
			if prop.status != http.StatusMultiStatus || strings.Contains(string(prop.body), "scan.dcm") {
				t.Fatalf("PROPFIND after archive: %s", prop)
			}
			e.want(e.do(bearer(full), http.MethodPost, "/api/v1/files/"+m.ID+"/restore", nil), http.StatusOK)
			if !inList() || davGet() != http.StatusOK {
				t.Fatal("restored file not visible")
			}
			e.want(e.do(bearer(full), http.MethodDelete, "/api/v1/files/"+m.ID+"?purge=true", nil), http.StatusNoContent)
			if blobOnDisk(t, e.blobDir, n.BlobKey) {
				t.Fatal("purged blob still on disk")
			}
			e.want(e.do(as("alice"), http.MethodGet, "/api/v1/files/"+m.ID, nil), http.StatusNotFound)
			if _, err := e.repo.NodeByID(context.Background(), m.ID); err == nil {
				t.Fatal("purged metadata still in the database")
			}
			lines, err := e.authz.Rules(context.Background(), policy.Filter{Ptype: "g2", Values: []string{"", "", m.ID}})
			if err != nil || len(lines) != 0 {
				t.Fatalf("grants left after purge: %v, %v", lines, err)
			}
		})

		t.Run("5 group grant of read (registrationStaff)", func(t *testing.T) {
			e.t = t
			license, _ := e.upload(as("admin"), "drivers-license.jpg", "\xff\xd8\xff license", "folder", "/clinic/queue")
			e.grant(as("admin"), dirs["/clinic/queue"], map[string]any{"group": "registrationstaff", "level": "read"})
			for _, u := range []string{"bob", "carol"} {
				r := e.do(as(u), http.MethodGet, "/api/v1/files/"+license.ID+"/content", nil)
				if r.status != http.StatusOK || !strings.HasSuffix(string(r.body), "license") {
					t.Fatalf("%s (registrationstaff) content: %s", u, r)
				}
			}
			e.want(e.do(as("dave"), http.MethodGet, "/api/v1/files/"+license.ID+"/content", nil), http.StatusForbidden)
			e.want(e.do(as("bob"), http.MethodDelete, "/api/v1/files/"+license.ID, nil), http.StatusForbidden)
			e.want(e.doJSON(as("bob"), http.MethodPost, "/api/v1/files/"+license.ID+"/grants",
				map[string]any{"user": "dave", "level": "read"}), http.StatusForbidden)

			// A grant on /a covers /a's files and not /a-b's.
			inA, _ := e.upload(as("admin"), "x.txt", "in a", "folder", "/a")
			inAB, _ := e.upload(as("admin"), "y.txt", "in a-b", "folder", "/a-b")
			e.grant(as("admin"), dirs["/a"], map[string]any{"group": "registrationstaff", "level": "read"})
			e.want(e.do(as("bob"), http.MethodGet, "/api/v1/files/"+inA.ID+"/content", nil), http.StatusOK)
			e.want(e.do(as("bob"), http.MethodGet, "/api/v1/files/"+inAB.ID+"/content", nil), http.StatusForbidden)

			// Removing the grant takes the access away again.
			e.want(e.do(as("admin"), http.MethodDelete, "/api/v1/files/"+dirs["/clinic/queue"]+"/grants?group=registrationstaff&level=read", nil),
				http.StatusNoContent)
			e.want(e.do(as("bob"), http.MethodGet, "/api/v1/files/"+license.ID+"/content", nil), http.StatusForbidden)
		})

		t.Run("6 per-user metadata grant", func(t *testing.T) {
			e.t = t
			e.grant(bearer(reportToken), report.ID, map[string]any{"user": "dave", "level": "metadata"})
			r := e.do(as("dave"), http.MethodGet, "/api/v1/files/"+report.ID, nil)
			e.want(r, http.StatusOK)
			var m fileMeta
			r.json(t, &m)
			if m.Name != "myReport.pdf" || m.Tokens != nil {
				t.Fatalf("metadata grant: %s", r.body)
			}
			e.want(e.do(as("dave"), http.MethodGet, "/api/v1/files/"+report.ID+"/content", nil), http.StatusForbidden)
			var grants struct{ Data []map[string]any }
			r = e.do(bearer(reportToken), http.MethodGet, "/api/v1/files/"+report.ID+"/grants", nil)
			e.want(r, http.StatusOK)
			r.json(t, &grants)
			if len(grants.Data) != 1 || grants.Data[0]["user"] != "dave" || grants.Data[0]["level"] != "metadata" {
				t.Fatalf("grants: %s", r.body)
			}
		})

		t.Run("7 public file", func(t *testing.T) {
			e.t = t
			m, full := e.upload(as("alice"), "poster.png", "\x89PNG\r\n\x1a\n...", "folder", "/alice")
			e.want(e.do(anonymous, http.MethodGet, "/api/v1/files/"+m.ID+"/content", nil), http.StatusUnauthorized)
			e.want(e.doJSON(bearer(full), http.MethodPut, "/api/v1/files/"+m.ID+"/public", map[string]any{"public": true}), http.StatusOK)
			r := e.do(anonymous, http.MethodGet, "/api/v1/files/"+m.ID+"/content", nil)
			if r.status != http.StatusOK || !strings.HasPrefix(string(r.body), "\x89PNG") {
				t.Fatalf("anonymous read of a public file: %s", r)
			}
			e.want(e.do(anonymous, http.MethodDelete, "/api/v1/files/"+m.ID, nil), http.StatusUnauthorized)
			e.want(e.doJSON(bearer(full), http.MethodPut, "/api/v1/files/"+m.ID+"/public", map[string]any{"public": false}), http.StatusOK)
			e.want(e.do(anonymous, http.MethodGet, "/api/v1/files/"+m.ID+"/content", nil), http.StatusUnauthorized)

			// PHI is never public unless an admin allows it.
			phi, phiFull := e.upload(as("alice"), "labs.txt", "hb 13", "folder", "/alice", "phi", "true")
			r = e.doJSON(bearer(phiFull), http.MethodPut, "/api/v1/files/"+phi.ID+"/public", map[string]any{"public": true})
			e.want(r, http.StatusConflict)
			e.want(e.doJSON(as("admin"), http.MethodPut, "/api/v1/files/"+dirs["/alice"]+"/public", map[string]any{"public": true}), http.StatusConflict)
			e.want(e.do(anonymous, http.MethodGet, "/api/v1/files/"+phi.ID+"/content", nil), http.StatusUnauthorized)
			e.want(e.doJSON(as("admin"), http.MethodPut, "/api/v1/settings/files", map[string]any{"allowPublicPhi": true}), http.StatusOK)
			e.want(e.doJSON(bearer(phiFull), http.MethodPut, "/api/v1/files/"+phi.ID+"/public", map[string]any{"public": true}), http.StatusOK)
			e.want(e.do(anonymous, http.MethodGet, "/api/v1/files/"+phi.ID+"/content", nil), http.StatusOK)
			e.want(e.doJSON(as("admin"), http.MethodPut, "/api/v1/settings/files", map[string]any{"allowPublicPhi": false}), http.StatusOK)
			e.want(e.doJSON(bearer(phiFull), http.MethodPut, "/api/v1/files/"+phi.ID+"/public", map[string]any{"public": false}), http.StatusOK)
		})

		t.Run("8 signed link", func(t *testing.T) {
			e.t = t
			var link struct {
				URL       string `json:"url"`
				Path      string `json:"path"`
				ExpiresIn int64  `json:"expiresIn"`
			}
			r := e.doJSON(bearer(reportToken), http.MethodPost, "/api/v1/files/"+report.ID+"/links", map[string]any{})
			e.want(r, http.StatusCreated)
			r.json(t, &link)
			if link.ExpiresIn != 900 || !strings.HasPrefix(link.URL, e.ts.URL+"/api/v1/links/"+report.ID+"?") {
				t.Fatalf("default link: %s", r.body)
			}
			u, _ := url.Parse(link.URL)
			e.secrets = append(e.secrets, u.Query().Get("signature"))
			r = e.do(anonymous, http.MethodGet, link.Path, nil)
			if r.status != http.StatusOK || string(r.body) != "%PDF-1.4 ecg" || r.header.Get("Content-Disposition") == "" {
				t.Fatalf("link: %s", r)
			}
			// Tampered signature, expiry, key, or another file's id: 403 JSON.
			q := u.Query()
			tamper := func(k, v string) string {
				q2 := url.Values{}
				for kk, vv := range q {
					q2[kk] = vv
				}
				q2.Set(k, v)
				return "/api/v1/links/" + report.ID + "?" + q2.Encode()
			}
			sig := q.Get("signature")
			flipped := string(rune(sig[0]^1)) + sig[1:]
			other, _ := e.upload(as("alice"), "other2.txt", "x", "folder", "/alice")
			for _, p := range []string{tamper("signature", flipped), tamper("expires", "9999999999"), tamper("key", "nope"),
				"/api/v1/links/" + other.ID + "?" + q.Encode(), "/api/v1/links/" + report.ID} {
				r := e.do(anonymous, http.MethodGet, p, nil)
				var body struct {
					Error struct{ Code string }
				}
				if r.status != http.StatusForbidden {
					t.Fatalf("%s: %s", p, r)
				}
				r.json(t, &body)
				if body.Error.Code != "link_invalid" {
					t.Fatalf("%s: %s", p, r.body)
				}
			}
			// A short link works, then expires.
			r = e.doJSON(bearer(reportToken), http.MethodPost, "/api/v1/files/"+report.ID+"/links", map[string]any{"expiresIn": "1m"})
			e.want(r, http.StatusCreated)
			r.json(t, &link)
			e.want(e.do(anonymous, http.MethodGet, link.Path, nil), http.StatusOK)
			e.clock.advance(61 * time.Second)
			e.want(e.do(anonymous, http.MethodGet, link.Path, nil), http.StatusForbidden)
			// Too long a link is refused; read tokens cannot share.
			e.want(e.doJSON(bearer(reportToken), http.MethodPost, "/api/v1/files/"+report.ID+"/links", map[string]any{"expiresIn": 90000}), http.StatusBadRequest)
			e.want(e.doJSON(bearer(readToken), http.MethodPost, "/api/v1/files/"+report.ID+"/links", map[string]any{}), http.StatusForbidden)
			// Archiving the file, and rotating the key, kill links.
			r = e.doJSON(bearer(reportToken), http.MethodPost, "/api/v1/files/"+report.ID+"/links", map[string]any{"expiresIn": 600})
			r.json(t, &link)
			e.want(e.do(bearer(reportToken), http.MethodDelete, "/api/v1/files/"+report.ID, nil), http.StatusNoContent)
			e.want(e.do(anonymous, http.MethodGet, link.Path, nil), http.StatusForbidden)
			e.want(e.do(bearer(reportToken), http.MethodPost, "/api/v1/files/"+report.ID+"/restore", nil), http.StatusOK)
			e.want(e.do(anonymous, http.MethodGet, link.Path, nil), http.StatusOK)
			e.want(e.do(as("alice"), http.MethodPost, "/api/v1/settings/links/rotate", nil), http.StatusForbidden)
			e.want(e.do(as("admin"), http.MethodPost, "/api/v1/settings/links/rotate", nil), http.StatusOK)
			e.want(e.do(anonymous, http.MethodGet, link.Path, nil), http.StatusForbidden)
		})

		t.Run("9 forced download", func(t *testing.T) {
			e.t = t
			cases := []struct{ name, content, mime string }{
				{"page.html", "<!doctype html><script>alert(1)</script>", "text/html"},
				{"logo.svg", `<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`, "image/svg+xml"},
				{"app.js", "alert(document.cookie)", "text/javascript"},
				{"feed.xml", `<?xml version="1.0"?><x/>`, "application/xml"},
				{"innocent.png", "<html><body onload=alert(1)>", "text/html"},
			}
			ids := map[string]string{}
			for _, c := range cases {
				m, _ := e.upload(as("alice"), c.name, c.content, "folder", "/alice")
				if !strings.HasPrefix(m.MimeType, c.mime) {
					t.Fatalf("%s recorded as %q, want %q", c.name, m.MimeType, c.mime)
				}
				ids[c.name] = m.ID
			}
			// HTML declared as image/png is still recorded as HTML.
			var declared fileMeta
			r := e.uploadRaw(as("alice"), "liar.png", "<html>x", "folder", "/alice", "mimeType", "image/png")
			e.want(r, http.StatusCreated)
			r.json(t, &declared)
			if declared.MimeType != "text/html" {
				t.Fatalf("declared image/png HTML recorded as %q", declared.MimeType)
			}
			e.secrets = append(e.secrets, (*declared.Tokens)[0].Token)
			disposition := func(name string) string {
				r := e.do(as("alice"), http.MethodGet, "/api/v1/files/"+ids[name]+"/content", nil)
				e.want(r, http.StatusOK)
				for h, v := range map[string]string{"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox",
					"Referrer-Policy": "no-referrer"} {
					if r.header.Get(h) != v {
						t.Fatalf("%s: %s = %q, want %q", name, h, r.header.Get(h), v)
					}
				}
				return r.header.Get("Content-Disposition")
			}
			for _, c := range cases {
				if d := disposition(c.name); !strings.HasPrefix(d, "attachment;") {
					t.Fatalf("%s: Content-Disposition %q, want attachment", c.name, d)
				}
			}
			r = e.doJSON(as("admin"), http.MethodPut, "/api/v1/settings/files",
				map[string]any{"disableForceDownloadForMimeTypes": []string{"image/svg+xml", "image/png"}})
			e.want(r, http.StatusOK)
			if d := disposition("logo.svg"); !strings.HasPrefix(d, "inline;") {
				t.Fatalf("allow-listed svg: %q", d)
			}
			for _, n := range []string{"page.html", "innocent.png", "app.js", "feed.xml"} {
				if d := disposition(n); !strings.HasPrefix(d, "attachment;") {
					t.Fatalf("%s with svg and png allow-listed: %q", n, d)
				}
			}
			r = e.doJSON(as("admin"), http.MethodPut, "/api/v1/settings/files", map[string]any{"disableForceDownloadForMimeTypes": []string{"*/*"}})
			e.want(r, http.StatusOK)
			var st struct {
				Warnings []string `json:"warnings"`
			}
			r.json(t, &st)
			if len(st.Warnings) == 0 || !strings.Contains(st.Warnings[0], "*/*") {
				t.Fatalf("*/* without a warning: %s", r.body)
			}
			if d := disposition("page.html"); !strings.HasPrefix(d, "inline;") {
				t.Fatalf("*/*: %q", d)
			}
			e.want(e.do(as("alice"), http.MethodGet, "/api/v1/settings/files", nil), http.StatusForbidden)
			e.want(e.doJSON(as("admin"), http.MethodPut, "/api/v1/settings/files", map[string]any{"disableForceDownloadForMimeTypes": []string{}}), http.StatusOK)

			// RFC 6266: an ASCII fallback and the exact UTF-8 name.
			m, _ := e.upload(as("alice"), "Befund Müller \"1\".pdf", "%PDF-", "folder", "/alice")
			r = e.do(as("alice"), http.MethodGet, "/api/v1/files/"+m.ID+"/content", nil)
			want := `attachment; filename="Befund M_ller _1_.pdf"; filename*=UTF-8''Befund%20M%C3%BCller%20%221%22.pdf`
			if got := r.header.Get("Content-Disposition"); got != want {
				t.Fatalf("Content-Disposition %q, want %q", got, want)
			}
		})

		e.t = t
		e.assertNoSecretsLogged()
	})
}

// blobOnDisk reports whether any file under dir is named after key.
func blobOnDisk(t *testing.T, dir, key string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(d.Name(), key) {
			found = true
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return found
}
