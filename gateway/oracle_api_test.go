package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/filegate/filegate/model"
)

// The files API part of the access matrix (oracle_test.go).

// apiNodes are the fixture's nodes the files API can name, and an id
// that names nothing.
func (e *ocEnv) apiNodes() []*oNode {
	var out []*oNode
	for _, p := range e.targets() {
		if n := e.files[p]; n != nil && n != e.o.root {
			out = append(out, n)
		}
	}
	return append(out, &oNode{id: model.NewID(), path: "(unknown id)", purged: true})
}

var apiOps = []string{"get", "content", "contentHead", "patch", "putContent", "archive", "restore", "tokensList", "tokenCreate",
	"tokenDelete", "grantsList", "grantCreate", "grantDelete", "publicSame", "publicPHI", "linkCreate"}

// apiCell runs one files API operation and compares it with the oracle.
// Operations that change the fixture are undone by the admin at once
// (restore an archived file, archive a restored one), with the undo
// checked as well.
func (e *ocEnv) apiCell(s *ocSubj, op string, n *oNode) {
	known := n.purged && n.path == "(unknown id)"
	on := n
	if known {
		on = nil
	}
	e.om.Lock()
	skip := op == "publicPHI" && (on == nil || !e.o.holdsPHI(on))
	want := e.o.apiExpect(s.oSubj, op, on)
	wantTokens := !n.dir && e.o.may(s.oSubj, "share", n)
	pub := false
	for _, g := range e.o.grants {
		pub = pub || (g.sub == "anyone" && g.node == n)
	}
	e.om.Unlock()
	if skip {
		return
	}
	base := "/api/v1/files/" + n.id
	var r ocResp
	switch op {
	case "get":
		r = e.send(s, false, "GET", base, nil)
		if r.status == 200 {
			hasTokens := bytes.Contains(r.body, []byte(`"tokens"`))
			if hasTokens != wantTokens {
				e.check("api", 0, 1, fmt.Sprintf("%-11s %-18s %-26s shows tokens=%v", op, s.name, n.path, hasTokens))
			}
		}
	case "content":
		r = e.send(s, false, "GET", base+"/content", nil)
	case "contentHead":
		r = e.send(s, false, "HEAD", base+"/content", nil)
	case "patch":
		r = e.sendJSON(s, "PATCH", base, map[string]string{"title": "seen by " + s.name})
	case "putContent":
		r = e.send(s, false, "PUT", base+"/content", []byte("rewritten by "+s.name), "Content-Type", "application/octet-stream")
	case "archive":
		r = e.send(s, false, "DELETE", base, nil)
	case "restore":
		r = e.send(s, false, "POST", base+"/restore", nil)
	case "tokensList":
		r = e.send(s, false, "GET", base+"/tokens", nil)
	case "tokenCreate":
		r = e.sendJSON(s, "POST", base+"/tokens", map[string]string{"accessLevel": "read"})
	case "tokenDelete":
		r = e.send(s, false, "DELETE", base+"/tokens/"+model.NewID(), nil)
	case "grantsList":
		r = e.send(s, false, "GET", base+"/grants", nil)
	case "grantCreate":
		r = e.sendJSON(s, "POST", base+"/grants", map[string]string{"user": "dave", "level": "read"})
	case "grantDelete":
		r = e.send(s, false, "DELETE", base+"/grants?user=dave", nil)
	case "publicSame":
		r = e.sendJSON(s, "PUT", base+"/public", map[string]bool{"public": pub})
	case "publicPHI":
		r = e.sendJSON(s, "PUT", base+"/public", map[string]bool{"public": true})
	case "linkCreate":
		r = e.sendJSON(s, "POST", base+"/links", map[string]int{"expiresIn": 60})
	}
	e.check("api", want, r.status, fmt.Sprintf("%-11s %-18s %-26s", op, s.name, n.path))
	if r.status != want || want >= 300 {
		return
	}
	admin := e.by["admin"]
	switch op {
	case "archive":
		// The oracle's state is not changed: the admin undoes it at once,
		// and no other cell looks at this node in between.
		e.check("api", 200, e.send(admin, false, "POST", base+"/restore", nil).status, "undo archive of "+n.path)
	case "restore":
		e.check("api", 204, e.send(admin, false, "DELETE", base, nil).status, "undo restore of "+n.path)
	case "linkCreate":
		var l struct{ Path string }
		json.Unmarshal(r.body, &l)
		e.check("api", 200, e.send(nil, false, "GET", l.Path, nil).status,
			fmt.Sprintf("%-11s %-18s %-26s", "linkUse", "anonymous", n.path))
	}
}

// apiMatrix runs every files API operation for every subject on every
// node, the listings, the admin-only endpoints, and creation into every
// folder under every spelling.
func (e *ocEnv) apiMatrix() {
	// Folders one at a time (archiving one hides what is below it), then
	// the files side by side: each file's cells touch that file only.
	var files []*oNode
	for _, n := range e.apiNodes() {
		if !n.dir {
			files = append(files, n)
			continue
		}
		for _, s := range e.subs {
			for _, op := range apiOps {
				e.apiCell(s, op, n)
			}
		}
	}
	run(files, func(n *oNode) {
		for _, s := range e.subs {
			for _, op := range apiOps {
				e.apiCell(s, op, n)
			}
		}
	})
	for _, s := range e.subs {
		e.listing(s, "", func(n *oNode) bool { return true })
		own := e.files["/alice/own.txt"]
		want := 404 // findFirst finds only what the caller may stat
		if e.o.apiVisible(s.oSubj)[own.id] {
			want = 200
		}
		e.check("api", want, e.send(s, false, "GET", "/api/v1/files/first?name=own.txt", nil).status,
			fmt.Sprintf("%-11s %-18s %s", "findFirst", s.name, own.path))
		e.listing(s, "rql="+url.QueryEscape("eq(phi,true)"), func(n *oNode) bool { return n.phi })
		for _, path := range []string{"/api/v1/audit", "/api/v1/settings/files", "/api/v1/policies", "/api/v1/users"} {
			want := e.o.apiDeny(s.oSubj)
			if e.o.may(s.oSubj, "admin", nil) {
				want = 200
			}
			e.check("api", want, e.send(s, false, "GET", path, nil).status, fmt.Sprintf("%-11s %-18s", "GET "+path, s.name))
		}
	}
	e.apiCreates()
	e.apiMoves()
}

// apiMoves has every subject move a file it may write (or, without one,
// any file) into every folder, spelled every way, through PATCH
// {folder}; a move that succeeds is undone at once.
func (e *ocEnv) apiMoves() {
	mine := map[string]string{"alice": "/alice/own.txt", "bob": "/bob/foreign.txt", "carol": "/a/x.txt",
		"admin": "/a-b/x.txt", "anonymous": "/alice/public.txt"}
	n := 0
	for _, s := range e.subs {
		var f *oNode
		if p, ok := mine[s.name]; ok {
			f = e.files[p]
		} else {
			f = s.file
		}
		for _, dst := range []string{"/", "/alice", "/bob", "/a", "/a-b", "/staff", "/alice/own.txt", "/nowhere", "/alice/missing/sub"} {
			for _, sp := range spellings {
				if !oracleLong() && sp.name != "plain" && n%3 != 0 {
					n++
					continue
				}
				n++
				raw, canon := valueSpelling(sp, dst)
				want := e.o.apiMove(s.oSubj, f, canon)
				r := e.sendJSON(s, "PATCH", "/api/v1/files/"+f.id, map[string]string{"folder": raw})
				row := fmt.Sprintf("%-11s %-18s %-26s to %s [%s]", "move", s.name, f.path, dst, sp.name)
				e.check("api", want, r.status, row)
				if r.status == 200 && want == 200 && canon != f.parent.path {
					back := e.sendJSON(s, "PATCH", "/api/v1/files/"+f.id, map[string]string{"folder": f.parent.path})
					e.check("api", 200, back.status, row+" (undo)")
				}
			}
		}
	}
}

// listing compares the ids a listing returns with the files the oracle
// says the caller may stat (only fixture ids count: other tests' files do
// not exist here, and created ones are in the oracle too).
func (e *ocEnv) listing(s *ocSubj, query string, keep func(*oNode) bool) {
	r := e.send(s, false, "GET", "/api/v1/files?limit=1000&"+query, nil)
	row := fmt.Sprintf("%-11s %-18s %s", "list", s.name, query)
	want := e.o.apiVisible(s.oSubj)
	for id := range want {
		if !keep(e.o.byID(id)) {
			delete(want, id)
		}
	}
	if s.gone {
		e.check("api", 401, r.status, row)
		return
	}
	e.check("api", 200, r.status, row)
	var out struct{ Data []struct{ ID string } }
	json.Unmarshal(r.body, &out)
	got := map[string]bool{}
	for _, d := range out.Data {
		got[d.ID] = true
		if e.o.byID(d.ID) != nil && !want[d.ID] {
			e.check("api", 0, 1, row+" shows "+e.o.byID(d.ID).path)
		}
	}
	for id := range want {
		if !got[id] {
			e.check("api", 1, 0, row+" hides "+e.o.byID(id).path)
		}
	}
}

// apiCreates posts a file as every subject into every folder, spelled
// every way (the folder is a query parameter, so %2F inside a name is a
// double-encoded slash and refused).
func (e *ocEnv) apiCreates() {
	n := 0
	for _, s := range e.subs {
		for _, f := range []string{"/", "/alice", "/bob", "/a", "/a-b", "/staff", "/alice/own.txt", "/alice/own.txt/sub", "/newtop/sub"} {
			for _, sp := range spellings {
				if !oracleLong() && sp.name != "plain" && sp.name != "case" && n%3 != 0 {
					n++
					continue
				}
				n++
				raw, canon := valueSpelling(sp, f)
				name := fmt.Sprintf("created-%d.txt", n)
				want, parent, missing := e.o.apiCreate(s.oSubj, canon)
				q := url.Values{"name": {name}, "folder": {raw}}
				r := e.send(s, false, "POST", "/api/v1/files?"+q.Encode(), []byte("x"), "Content-Type", "application/octet-stream")
				e.check("api", want, r.status, fmt.Sprintf("%-11s %-18s %-26s [%s]", "create", s.name, f, sp.name))
				if want != 201 || r.status != 201 {
					continue
				}
				for _, m := range missing {
					p := parent.path + "/" + m
					if parent == e.o.root {
						p = "/" + m
					}
					x, err := e.repo.LiveByPath(context.Background(), p)
					if err != nil {
						e.t.Fatal(err)
					}
					parent = e.o.add(parent, m, x.ID, true)
				}
				var meta struct{ ID string }
				json.Unmarshal(r.body, &meta)
				e.o.add(parent, name, meta.ID, false)
			}
		}
	}
}

// purgeMatrix purges every fixture file, the refused subjects first and
// the first allowed one for real; after it the file is unknown to all,
// and its tokens no longer authenticate anyone.
func (e *ocEnv) purgeMatrix() {
	for _, n := range e.apiNodes() {
		if n.dir {
			continue
		}
		for _, s := range e.subs {
			on := n
			if n.path == "(unknown id)" {
				on = nil
			}
			want := e.o.apiExpect(s.oSubj, "purge", on)
			r := e.send(s, false, "DELETE", "/api/v1/files/"+n.id+"?purge=true", nil)
			e.check("api", want, r.status, fmt.Sprintf("%-11s %-18s %-26s", "purge", s.name, n.path))
			if want == 204 && r.status == 204 {
				e.o.purge(n)
				for _, t := range e.subs {
					if t.file != nil && t.file.purged {
						t.gone = true
					}
				}
			}
		}
	}
	for _, s := range e.subs {
		e.listing(s, "", func(*oNode) bool { return true })
	}
}
