package gateway_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model/dbtest"
)

// readCells compares, for every subject, a WebDAV GET of every live node
// at or below the given paths (all of them for "/") and a files API
// content read of every such file with the oracle.
func (e *ocEnv) readCells(step string, paths ...string) {
	type job struct {
		s *ocSubj
		n *oNode
	}
	var jobs []job
	for _, s := range e.subs {
		for _, n := range e.o.nodes {
			if n.archived != 0 || n.purged || n == e.o.root {
				continue
			}
			for _, p := range paths {
				if a := e.o.live(p); a != nil && within(n, a) {
					jobs = append(jobs, job{s, n})
					break
				}
			}
		}
	}
	run(jobs, func(j job) {
		row := fmt.Sprintf("after %s: %-18s %s", step, j.s.name, j.n.path)
		want := e.o.davExpect(j.s.oSubj, "GET", j.n.path, "")
		e.check("dav", want, e.send(j.s, true, "GET", gateway.DAVPrefix+escapeSegs(j.n.path), nil).status, "GET "+row)
		if !j.n.dir {
			want = e.o.apiExpect(j.s.oSubj, "content", j.n)
			e.check("api", want, e.send(j.s, false, "GET", "/api/v1/files/"+j.n.id+"/content", nil).status, "content "+row)
		}
	})
}

// davMoveCopy runs a real MOVE or COPY and, when the oracle allows it,
// makes the same change in the oracle.
func (e *ocEnv) davMoveCopy(who, method, src, dst string) {
	e.t.Helper()
	s := e.by[who]
	want := e.o.davExpect(s.oSubj, method, src, dst)
	if want == 412 { // allowed: the matrix's failing precondition is not sent here
		want = 201
	}
	r := e.send(s, true, method, gateway.DAVPrefix+escapeSegs(src), nil,
		"Destination", e.ts.URL+gateway.DAVPrefix+escapeSegs(dst))
	row := fmt.Sprintf("%s %s %s -> %s", who, method, src, dst)
	e.check("dav", want, r.status, row)
	if want != 201 || r.status != 201 {
		return
	}
	n, parent := e.o.live(src), e.o.live(parentPath(dst))
	if method == "MOVE" {
		e.o.move(n, parent, baseName(dst))
	} else {
		e.o.copyTree(n, parent, baseName(dst), func(p string) string {
			x, err := e.repo.LiveByPath(context.Background(), p)
			if err != nil {
				e.t.Fatalf("%s: the copy %s is missing: %v", row, p, err)
			}
			return x.ID
		})
	}
	if oracleLong() {
		e.readCells(row, parentPath(src), parentPath(dst))
		return
	}
	e.readCells(row, dst) // the moved subtree, or the copy; the whole tree is read at the end
}

// TestAccessMoveCopyAcrossGrants moves and copies files and folders
// between folders with different grants through WebDAV and the files
// API: grants on a node follow it (README: objects are ids), grants of
// the folder it left no longer reach it, and a copy is a new node that
// no grant of the original reaches.
func TestAccessMoveCopyAcrossGrants(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newOracleEnv(t, db)
		e.grantAPI(e.by["admin"], e.files["/a-b"], "user", "alice", "full")
		e.davMoveCopy("alice", "COPY", "/alice/shared-bob.txt", "/alice/copy-of-shared.txt")
		e.davMoveCopy("alice", "MOVE", "/alice/shared-bob.txt", "/a-b/shared-bob.txt")
		e.davMoveCopy("alice", "MOVE", "/alice/own.txt", "/a-b/own.txt")
		e.davMoveCopy("carol", "MOVE", "/a/x.txt", "/a-b/x-from-a.txt")
		e.davMoveCopy("carol", "COPY", "/a-b/x.txt", "/a/x-copy.txt")
		e.davMoveCopy("bob", "MOVE", "/a-b/shared-bob.txt", "/bob/sb.txt")
		e.davMoveCopy("bob", "COPY", "/a-b/shared-bob.txt", "/bob/sb-copy.txt")
		e.davMoveCopy("carol", "MOVE", "/alice/shared-staff.txt", "/a/shared-staff.txt")
		e.davMoveCopy("alice", "MOVE", "/alice", "/a-b/alice-moved")
		e.davMoveCopy("alice", "COPY", "/a-b/alice-moved/meta.txt", "/a/meta-copy.txt")
		e.davMoveCopy("alice", "MOVE", "/a-b", "/a/a-b")

		// The files API moves by PATCH {folder}: the same rules.
		own := e.files["/alice/own.txt"] // the node, wherever it is now
		for _, c := range []struct{ who, folder string }{
			{"carol", "/a"}, {"token(full /alice/own.txt)", "/a-b/alice-moved"}, {"alice", "/a-b/alice-moved"},
		} {
			s := e.by[c.who]
			want := e.o.apiMove(s.oSubj, own, c.folder)
			r := e.sendJSON(s, "PATCH", "/api/v1/files/"+own.id, map[string]string{"folder": c.folder})
			row := fmt.Sprintf("%s PATCH %s folder=%s", c.who, own.path, c.folder)
			e.check("api", want, r.status, row)
			if want == 200 && r.status == 200 {
				e.o.move(own, e.o.live(c.folder), baseName(own.path))
				e.readCells(row, c.folder)
			}
		}
		e.readCells("all moves", "/")
		for _, d := range e.diffs {
			t.Error(d)
		}
		t.Logf("RELIABILITY authz_cells=%d differences=%d (move/copy across grants)", e.cells["dav"]+e.cells["api"], len(e.diffs))
	})
}

// TestAccessRevocation takes access away in every way the product offers
// (a grant removed through the admin API, a group membership, a token, a
// public flag, a folder grant under a running tus upload) and checks that
// the very next request, on the same connection, is refused.
func TestAccessRevocation(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newOracleEnv(t, db)
		admin, alice := e.by["admin"], e.by["alice"]
		get := func(who, p string) {
			t.Helper()
			s := e.by[who]
			e.check("dav", e.o.davExpect(s.oSubj, "GET", p, ""),
				e.send(s, true, "GET", gateway.DAVPrefix+escapeSegs(p), nil).status, who+" GET "+p)
		}
		policy := func(op string, line ...string) {
			t.Helper()
			e.must(e.sendJSON(admin, "POST", "/api/v1/policies", map[string]any{op: [][]string{line}}), 200, op+" policy line")
		}

		// A user grant removed through the admin API.
		sb := e.files["/alice/shared-bob.txt"]
		get("bob", sb.path)
		policy("remove", "g2", "user:bob", "level:read", sb.id)
		e.o.revoke("user:bob", sb)
		get("bob", sb.path)
		e.check("api", e.o.apiExpect(e.by["bob"].oSubj, "content", sb),
			e.send(e.by["bob"], false, "GET", "/api/v1/files/"+sb.id+"/content", nil).status, "bob content after revocation")

		// A group membership removed through the admin API.
		get("carol", "/staff/s.txt")
		e.must(e.send(admin, false, "DELETE", "/api/v1/groups/staff/members/carol", nil), 200, "remove carol from staff")
		e.by["carol"].groups = nil
		get("carol", "/staff/s.txt")
		get("carol", "/alice/shared-staff.txt")

		// A token deleted through the files API.
		tok := e.by["token(read /alice/own.txt)"]
		get(tok.name, "/alice/own.txt")
		e.must(e.send(alice, false, "DELETE", "/api/v1/files/"+tok.file.id+"/tokens/"+tok.token, nil), 204, "delete token")
		tok.gone = true
		get(tok.name, "/alice/own.txt")
		e.check("api", 401, e.send(tok, false, "GET", "/api/v1/files/"+tok.file.id, nil).status, "deleted token, API")

		// A public file made private.
		pub := e.files["/alice/public.txt"]
		get("anonymous", pub.path)
		e.must(e.sendJSON(alice, "PUT", "/api/v1/files/"+pub.id+"/public", map[string]bool{"public": false}), 200, "unpublish")
		e.o.revoke("anyone", pub)
		get("anonymous", pub.path)
		get("bob", pub.path)

		// alice's own folder grant removed by the admin: her next write
		// through each door is refused.
		own := e.files["/alice/own.txt"]
		e.check("api", 200, e.send(alice, false, "PUT", "/api/v1/files/"+own.id+"/content", []byte("v2")).status, "alice writes")
		policy("remove", "g2", "user:alice", "level:full", e.files["/alice"].id)
		e.o.revoke("user:alice", e.files["/alice"])
		e.check("api", e.o.apiExpect(alice.oSubj, "putContent", own),
			e.send(alice, false, "PUT", "/api/v1/files/"+own.id+"/content", []byte("v3")).status, "alice writes after revocation")
		e.check("dav", e.o.davExpect(alice.oSubj, "PUT", own.path, ""),
			e.send(alice, true, "PUT", gateway.DAVPrefix+own.path, []byte("v3")).status, "alice PUT after revocation")

		// A folder grant removed under a tus upload in progress: the next
		// PATCH is refused and the upload does not complete.
		ab := e.files["/a-b"]
		policy("add", "g2", "user:bob", "level:full", ab.id)
		e.o.grant("user:bob", lvlFull, ab)
		bob := e.by["bob"]
		meta := "filename " + b64s("tus-revoked.txt") + ",folder " + b64s("/a-b")
		r := e.send(bob, false, "POST", gateway.TusPrefix, nil, "Tus-Resumable", "1.0.0", "Upload-Length", "4", "Upload-Metadata", meta)
		e.check("tus", e.o.tusCreate(bob.oSubj, "/a-b"), r.status, "bob creates an upload in /a-b")
		loc := r.header.Get("Location")
		r = e.send(bob, false, "PATCH", loc, []byte("ab"), "Tus-Resumable", "1.0.0", "Upload-Offset", "0",
			"Content-Type", "application/offset+octet-stream")
		e.check("tus", 204, r.status, "bob's first PATCH")
		policy("remove", "g2", "user:bob", "level:full", ab.id)
		e.o.revoke("user:bob", ab)
		r = e.send(bob, false, "PATCH", loc, []byte("cd"), "Tus-Resumable", "1.0.0", "Upload-Offset", "2",
			"Content-Type", "application/offset+octet-stream")
		e.check("tus", 403, r.status, "bob's PATCH after revocation")
		if _, err := e.repo.LiveByPath(context.Background(), "/a-b/tus-revoked.txt"); err == nil {
			e.check("tus", 0, 1, "the revoked upload completed")
		}
		get("bob", "/a-b/x.txt")

		// The admin role itself: a demoted admin is refused at once.
		e.must(e.sendJSON(admin, "POST", "/api/v1/users", map[string]any{"name": "root2", "password": userPW("root2")}), 201, "root2")
		policy("add", "g", "user:root2", "role:admin")
		root2 := &ocSubj{oSubj: &oSubj{name: "root2", user: "root2", admin: true}, password: userPW("root2")}
		e.check("api", 200, e.send(root2, false, "GET", "/api/v1/files/"+own.id, nil).status, "root2 as admin")
		policy("remove", "g", "user:root2", "role:admin")
		root2.admin = false
		e.check("api", e.o.apiExpect(root2.oSubj, "get", own),
			e.send(root2, false, "GET", "/api/v1/files/"+own.id, nil).status, "root2 after demotion")
		e.check("dav", e.o.davExpect(root2.oSubj, "GET", own.path, ""),
			e.send(root2, true, "GET", gateway.DAVPrefix+own.path, nil).status, "root2 WebDAV after demotion")

		// A disabled user: the next request, with a cached password, is 401.
		get("bob", "/bob/foreign.txt")
		e.must(e.sendJSON(admin, "PATCH", "/api/v1/users/bob", map[string]bool{"disabled": true}), 200, "disable bob")
		bob.gone = true
		get("bob", "/bob/foreign.txt")

		for _, d := range e.diffs {
			t.Error(d)
		}
		t.Logf("RELIABILITY authz_cells=%d differences=%d (revocation)", e.cells["dav"]+e.cells["api"]+e.cells["tus"], len(e.diffs))
	})
}

func b64s(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestAccessConcurrentProppatch sets one dead property of one file from
// several clients at once: each is authorized and must succeed (207). The
// long access matrix found PostgreSQL answering 500 to all but one.
func TestAccessConcurrentProppatch(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newOracleEnv(t, db)
		alice := e.by["alice"]
		jobs := make([]int, 16)
		for i := range jobs {
			jobs[i] = i
		}
		run(jobs, func(i int) {
			r := e.send(alice, true, "PROPPATCH", gateway.DAVPrefix+"/alice/own.txt", []byte(propPatchBody),
				"Content-Type", "application/xml")
			e.check("dav", e.o.davExpect(alice.oSubj, "PROPPATCH", "/alice/own.txt", ""), r.status,
				fmt.Sprintf("concurrent PROPPATCH %d", i))
		})
		for _, d := range e.diffs {
			t.Error(d)
		}
	})
}
