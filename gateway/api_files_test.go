package gateway_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

func TestFilesAPI(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAPIEnv(t, db)
		dirs := e.folders("/w", "/w/archive", "/pub")
		e.grant(as("admin"), dirs["/w"], map[string]any{"user": "alice", "level": "full"})
		m, full := e.upload(as("alice"), "a.txt", "hello world", "folder", "/w", "tags", "x")

		t.Run("content: ETag, Last-Modified, Range, conditional GET", func(t *testing.T) {
			e.t = t
			r := e.do(bearer(full), http.MethodGet, "/api/v1/files/"+m.ID+"/content", nil)
			e.want(r, http.StatusOK)
			etag, lm := r.header.Get("ETag"), r.header.Get("Last-Modified")
			if etag == "" || lm == "" || r.header.Get("Accept-Ranges") != "bytes" {
				t.Fatalf("headers: %v", r.header)
			}
			r = e.do(bearer(full), http.MethodGet, "/api/v1/files/"+m.ID+"/content", nil, "Range", "bytes=6-10")
			if r.status != http.StatusPartialContent || string(r.body) != "world" || r.header.Get("Content-Range") != "bytes 6-10/11" {
				t.Fatalf("range: %s %v", r, r.header)
			}
			e.want(e.do(bearer(full), http.MethodGet, "/api/v1/files/"+m.ID+"/content", nil, "If-None-Match", etag), http.StatusNotModified)
			e.want(e.do(bearer(full), http.MethodGet, "/api/v1/files/"+m.ID+"/content", nil, "Range", "bytes=50-60"),
				http.StatusRequestedRangeNotSatisfiable)
			h := e.do(bearer(full), http.MethodHead, "/api/v1/files/"+m.ID+"/content", nil)
			if h.status != http.StatusOK || len(h.body) != 0 || h.header.Get("Content-Length") != "11" {
				t.Fatalf("HEAD: %s %v", h, h.header)
			}
		})

		t.Run("PUT content with If-Match", func(t *testing.T) {
			e.t = t
			cur := e.do(bearer(full), http.MethodGet, "/api/v1/files/"+m.ID, nil)
			etag := cur.header.Get("ETag")
			e.want(e.do(bearer(full), http.MethodPut, "/api/v1/files/"+m.ID+"/content", strings.NewReader("v2"),
				"If-Match", `"stale"`), http.StatusPreconditionFailed)
			r := e.do(bearer(full), http.MethodPut, "/api/v1/files/"+m.ID+"/content", strings.NewReader("version two"), "If-Match", etag)
			e.want(r, http.StatusOK)
			var after fileMeta
			r.json(t, &after)
			if after.Size != 11 || after.SHA256 == m.SHA256 || r.header.Get("ETag") == etag || after.ID != m.ID {
				t.Fatalf("after replace: %s (etag %s)", r.body, r.header.Get("ETag"))
			}
			got := e.do(bearer(full), http.MethodGet, "/api/v1/files/"+m.ID+"/content", nil)
			if string(got.body) != "version two" {
				t.Fatalf("content after replace: %q", got.body)
			}
			e.want(e.do(bearer(full), http.MethodPut, "/api/v1/files/"+m.ID+"/content", strings.NewReader("v3"), "If-Match", etag),
				http.StatusPreconditionFailed)
		})

		t.Run("PATCH metadata, rename and move", func(t *testing.T) {
			e.t = t
			r := e.doJSON(bearer(full), http.MethodPatch, "/api/v1/files/"+m.ID, map[string]any{
				"name": "b.txt", "tags": "p,q", "title": "T", "description": "D", "source": "S"})
			e.want(r, http.StatusOK)
			var p fileMeta
			r.json(t, &p)
			if p.Name != "b.txt" || p.Path != "/w/b.txt" || !slices.Equal(p.Tags, []string{"p", "q"}) || p.Title != "T" ||
				p.Description != "D" || p.Source != "S" {
				t.Fatalf("patched: %s", r.body)
			}
			r = e.doJSON(as("alice"), http.MethodPatch, "/api/v1/files/"+m.ID, map[string]any{"folder": "/w/archive"})
			e.want(r, http.StatusOK)
			r.json(t, &p)
			if p.Path != "/w/archive/b.txt" {
				t.Fatalf("moved: %s", r.body)
			}
			// The file keeps its id and so its token.
			e.want(e.do(bearer(full), http.MethodGet, "/api/v1/files/"+m.ID+"/content", nil), http.StatusOK)
			// Moving out of alice's folder needs write on the destination;
			// a folder she may not even see answers 404, as WebDAV's MOVE.
			e.want(e.doJSON(as("alice"), http.MethodPatch, "/api/v1/files/"+m.ID, map[string]any{"folder": "/pub"}), http.StatusNotFound)
			e.want(e.doJSON(as("alice"), http.MethodPatch, "/api/v1/files/"+m.ID, map[string]any{"bogus": 1}), http.StatusBadRequest)
			e.want(e.doJSON(as("alice"), http.MethodPatch, "/api/v1/files/"+m.ID, map[string]any{"name": "../x"}), http.StatusBadRequest)
			e.upload(as("alice"), "taken.txt", "x", "folder", "/w/archive")
			e.want(e.doJSON(as("alice"), http.MethodPatch, "/api/v1/files/"+m.ID, map[string]any{"name": "taken.txt"}), http.StatusConflict)
		})

		t.Run("PHI cannot move or be flagged into public reach", func(t *testing.T) {
			e.t = t
			e.want(e.doJSON(as("admin"), http.MethodPut, "/api/v1/files/"+dirs["/pub"]+"/public", map[string]any{"public": true}), http.StatusOK)
			phi, phiFull := e.upload(as("admin"), "p.txt", "phi", "folder", "/w", "phi", "true")
			r := e.doJSON(as("admin"), http.MethodPatch, "/api/v1/files/"+phi.ID, map[string]any{"folder": "/pub"})
			e.want(r, http.StatusConflict)
			if !strings.Contains(string(r.body), "phi_public") {
				t.Fatalf("code: %s", r.body)
			}
			plain, _ := e.upload(as("admin"), "plain.txt", "x", "folder", "/pub")
			e.want(e.doJSON(as("admin"), http.MethodPatch, "/api/v1/files/"+plain.ID, map[string]any{"phi": true}), http.StatusConflict)
			e.want(e.uploadRaw(as("admin"), "late-phi.txt", "x", "folder", "/pub", "phi", "true"), http.StatusConflict)
			e.want(e.do(bearer(phiFull), http.MethodGet, "/api/v1/files/"+phi.ID+"/content", nil), http.StatusOK)
		})

		t.Run("uploads: conflicts, folders, refusals", func(t *testing.T) {
			e.t = t
			e.want(e.uploadRaw(as("alice"), "dup.txt", "1", "folder", "/w"), http.StatusCreated)
			e.want(e.uploadRaw(as("alice"), "dup.txt", "2", "folder", "/w"), http.StatusConflict)
			e.want(e.uploadRaw(as("dave"), "x.txt", "1", "folder", "/w"), http.StatusForbidden)
			e.want(e.uploadRaw(anonymous, "x.txt", "1", "folder", "/w"), http.StatusUnauthorized)
			e.want(e.uploadRaw(as("alice"), "x.txt", "1", "folder", "/w/new/deeper"), http.StatusCreated)
			e.want(e.uploadRaw(as("alice"), "x.txt", "1", "folder", "/elsewhere"), http.StatusForbidden)
			e.want(e.uploadRaw(as("alice"), "x.txt", "1", "parentId", dirs["/w"], "folder", "/w"), http.StatusBadRequest)
			e.want(e.uploadRaw(as("alice"), "x.txt", "1", "folder", "/w", "phi", "maybe"), http.StatusBadRequest)
			e.want(e.do(as("alice"), http.MethodPost, "/api/v1/files?folder=/w", strings.NewReader("x")), http.StatusBadRequest)
			// Folders answer as inode/directory and have no content or tokens.
			r := e.do(as("alice"), http.MethodGet, "/api/v1/files/"+dirs["/w"], nil)
			var f fileMeta
			r.json(t, &f)
			if f.MimeType != "inode/directory" || f.Tokens != nil {
				t.Fatalf("folder metadata: %s", r.body)
			}
			e.want(e.do(as("alice"), http.MethodGet, "/api/v1/files/"+dirs["/w"]+"/content", nil), http.StatusNotFound)
			e.want(e.doJSON(as("alice"), http.MethodPost, "/api/v1/files/"+dirs["/w"]+"/tokens", map[string]any{"accessLevel": "read"}),
				http.StatusConflict)
		})

		t.Run("tokens: levels, expiry, listing", func(t *testing.T) {
			e.t = t
			f, ffull := e.upload(as("alice"), "tok.txt", "t", "folder", "/w")
			e.want(e.doJSON(bearer(ffull), http.MethodPost, "/api/v1/files/"+f.ID+"/tokens", map[string]any{"accessLevel": "admin"}), http.StatusBadRequest)
			e.want(e.doJSON(bearer(ffull), http.MethodPost, "/api/v1/files/"+f.ID+"/tokens",
				map[string]any{"accessLevel": "read", "expiresIn": "-1h"}), http.StatusBadRequest)
			r := e.doJSON(bearer(ffull), http.MethodPost, "/api/v1/files/"+f.ID+"/tokens", map[string]any{"accessLevel": "read", "expiresIn": "1h"})
			e.want(r, http.StatusCreated)
			var tok struct {
				ID, Token string
				ExpiresAt *string
			}
			r.json(t, &tok)
			e.secrets = append(e.secrets, tok.Token)
			if tok.ExpiresAt == nil {
				t.Fatalf("no expiry: %s", r.body)
			}
			var list struct{ Data []map[string]any }
			r = e.do(bearer(ffull), http.MethodGet, "/api/v1/files/"+f.ID+"/tokens", nil)
			e.want(r, http.StatusOK)
			r.json(t, &list)
			if len(list.Data) != 2 || strings.Contains(string(r.body), tok.Token) || strings.Contains(string(r.body), ffull) {
				t.Fatalf("token list: %s", r.body)
			}
			e.want(e.do(bearer(ffull), http.MethodDelete, "/api/v1/files/"+f.ID+"/tokens/"+tok.ID, nil), http.StatusNoContent)
			e.want(e.do(bearer(tok.Token), http.MethodGet, "/api/v1/files/"+f.ID+"/content", nil), http.StatusUnauthorized)
			e.want(e.do(bearer(ffull), http.MethodDelete, "/api/v1/files/"+f.ID+"/tokens/nope", nil), http.StatusNotFound)
		})

		t.Run("view_files holders see metadata of everything, not content", func(t *testing.T) {
			e.t = t
			if err := e.authz.Apply(t.Context(), policy.Change{Add: [][]string{
				policy.Allow("role:file-viewer", policy.AnyObject, policy.ActViewFiles),
				policy.Membership("user:carol", "role:file-viewer")}}); err != nil {
				t.Fatal(err)
			}
			e.want(e.do(as("carol"), http.MethodGet, "/api/v1/files/"+m.ID, nil), http.StatusOK)
			e.want(e.do(as("carol"), http.MethodGet, "/api/v1/files/"+m.ID+"/content", nil), http.StatusForbidden)
			e.want(e.do(as("dave"), http.MethodGet, "/api/v1/files/"+m.ID, nil), http.StatusForbidden)
		})

		t.Run("folder listing and the OpenAPI document", func(t *testing.T) {
			e.t = t
			var l struct{ Data []fileMeta }
			r := e.do(as("alice"), http.MethodGet, "/api/v1/files?parentId="+dirs["/w"], nil)
			e.want(r, http.StatusOK)
			r.json(t, &l)
			var sawFolder bool
			for _, x := range l.Data {
				sawFolder = sawFolder || (x.Name == "archive" && x.MimeType == "inode/directory")
			}
			if !sawFolder {
				t.Fatalf("children of /w: %s", r.body)
			}
			r = e.do(anonymous, http.MethodGet, "/api/v1/openapi.json", nil)
			e.want(r, http.StatusOK)
			if string(r.body) != string(gateway.OpenAPI()) {
				t.Fatal("served OpenAPI document differs from the embedded one")
			}
		})

		t.Run("errors are JSON without internals", func(t *testing.T) {
			e.t = t
			for _, c := range []struct {
				method, path string
				status       int
			}{
				{http.MethodGet, "/api/v1/files/does-not-exist", http.StatusNotFound},
				{http.MethodGet, "/api/v1/nothing-here", http.StatusNotFound},
				{http.MethodPost, "/api/v1/files/" + m.ID, http.StatusNotFound},
				{http.MethodGet, "/api/v1/files?rql=eq(name", http.StatusBadRequest},
				{http.MethodGet, "/api/v1/files?limit=0", http.StatusBadRequest},
				{http.MethodGet, "/api/v1/audit", http.StatusForbidden},
			} {
				r := e.do(as("alice"), c.method, c.path, nil)
				var body struct {
					Error struct{ Code, Message string }
				}
				if r.status != c.status {
					t.Fatalf("%s %s: %s, want %d", c.method, c.path, r, c.status)
				}
				r.json(t, &body)
				if body.Error.Code == "" || body.Error.Message == "" {
					t.Fatalf("%s %s: %s", c.method, c.path, r.body)
				}
				for _, leak := range []string{e.blobDir, "SELECT", "sqlite", "postgres", "goroutine", ".go:"} {
					if strings.Contains(string(r.body), leak) {
						t.Fatalf("%s %s leaks %q: %s", c.method, c.path, leak, r.body)
					}
				}
			}
			e.want(e.do(func(r *http.Request) { r.SetBasicAuth("alice", "wrong") }, http.MethodGet, "/api/v1/files", nil), http.StatusUnauthorized)
		})

		e.t = t
		e.assertNoSecretsLogged()
	})
}
