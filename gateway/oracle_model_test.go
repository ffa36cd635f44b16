package gateway_test

// The independent authorization oracle of the access matrix
// (oracle_test.go). It is written from the README's "Access model" and
// "The doors" sections only: it does not call the policy package, the
// model's path functions or any gateway code, so a bug there cannot hide
// by being copied here. It keeps its own picture of the tree (ids, paths,
// archived and phi flags) and of the grants, and says which status each
// door must answer.

import "strings"

// level is what a subject holds on a node; levels are ordered.
type level int

const (
	lvlNone level = iota
	lvlMetadata
	lvlRead
	lvlFull
	lvlAdmin
)

// need is the level an action needs (README: metadata allows stat, read
// adds read, full adds write, delete and share).
var need = map[string]level{"stat": lvlMetadata, "read": lvlRead, "write": lvlFull, "delete": lvlFull,
	"share": lvlFull, "admin": lvlAdmin, "view_files": lvlAdmin}

// oSubj is a caller: anonymous, a user (with groups, maybe an admin), or
// a per-file token.
type oSubj struct {
	name   string // for report rows
	anon   bool
	user   string
	groups []string
	admin  bool
	token  string // the token's id, for "token:<id>" grants
	gone   bool   // the token was removed (its file purged): 401
}

// keys are the grant subjects the caller is (README: every subject is
// also anyone).
func (s *oSubj) keys() []string {
	out := []string{"anyone"}
	if s.user != "" {
		out = append(out, "user:"+s.user)
	}
	for _, g := range s.groups {
		out = append(out, "group:"+g)
	}
	if s.token != "" {
		out = append(out, "token:"+s.token)
	}
	return out
}

// oNode is a file or folder as the oracle knows it.
type oNode struct {
	id, path string
	parent   *oNode
	dir, phi bool
	archived int // 0 live; else the stamp of the archive that hid it
	purged   bool
}

type oGrant struct {
	sub  string
	lvl  level
	node *oNode
}

// oracle is the expected state of the store and the rules over it.
type oracle struct {
	root   *oNode
	nodes  []*oNode
	grants []oGrant
	stamp  int
}

func newOracle(rootID string) *oracle {
	r := &oNode{id: rootID, path: "/", dir: true}
	return &oracle{root: r, nodes: []*oNode{r}}
}

// add records a node created under parent.
func (o *oracle) add(parent *oNode, name, id string, dir bool) *oNode {
	p := parent.path + "/" + name
	if parent == o.root {
		p = "/" + name
	}
	n := &oNode{id: id, path: p, parent: parent, dir: dir}
	o.nodes = append(o.nodes, n)
	return n
}

func (o *oracle) grant(sub string, l level, n *oNode) {
	o.grants = append(o.grants, oGrant{sub, l, n})
}

func (o *oracle) revoke(sub string, n *oNode) {
	kept := o.grants[:0]
	for _, g := range o.grants {
		if g.sub != sub || g.node != n {
			kept = append(kept, g)
		}
	}
	o.grants = kept
}

// live is the live node at a canonical path, nil if none. Names are
// compared exactly (case-sensitive; callers pass NFC).
func (o *oracle) live(p string) *oNode {
	for _, n := range o.nodes {
		if n.path == p && n.archived == 0 && !n.purged {
			return n
		}
	}
	return nil
}

func (o *oracle) byID(id string) *oNode {
	for _, n := range o.nodes {
		if n.id == id && !n.purged {
			return n
		}
	}
	return nil
}

// within reports whether n is a or lies below it.
func within(n, a *oNode) bool {
	for x := n; x != nil; x = x.parent {
		if x == a {
			return true
		}
	}
	return false
}

// level is the highest level the subject holds on n: a grant on n or any
// node above it, to the subject itself, one of its groups, or anyone.
func (o *oracle) level(s *oSubj, n *oNode) level {
	if n == nil || n.purged || s.gone {
		return lvlNone
	}
	if s.admin {
		return lvlAdmin
	}
	best := lvlNone
	keys := s.keys()
	for _, g := range o.grants {
		if g.lvl > best && within(n, g.node) && contains(keys, g.sub) {
			best = g.lvl
		}
	}
	return best
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// may says whether s may do act on n (nil: a global action).
func (o *oracle) may(s *oSubj, act string, n *oNode) bool {
	if act == "admin" || act == "view_files" {
		return s.admin && !s.gone
	}
	return o.level(s, n) >= need[act]
}

func (o *oracle) archive(n *oNode) {
	o.stamp++
	for _, x := range o.nodes {
		if x.archived == 0 && !x.purged && within(x, n) {
			x.archived = o.stamp
		}
	}
}

func (o *oracle) restore(n *oNode) {
	st := n.archived
	for _, x := range o.nodes {
		if x.archived == st && within(x, n) {
			x.archived = 0
		}
	}
}

func (o *oracle) purge(n *oNode) {
	for _, x := range o.nodes {
		if within(x, n) {
			x.purged = true
		}
	}
	kept := o.grants[:0]
	for _, g := range o.grants {
		if !g.node.purged {
			kept = append(kept, g)
		}
	}
	o.grants = kept
}

func parentPath(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

func baseName(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

// --- WebDAV (README "The doors" and "Access model": 401 for anonymous
// refusals, 404 when the caller may not stat the node nor its folder, 403
// with a DAV error body otherwise) ---

func (o *oracle) davRefuse(s *oSubj, n *oNode) int {
	if s.anon {
		return 401
	}
	if !o.may(s, "stat", n) && !o.may(s, "stat", n.parent) {
		return 404
	}
	return 403
}

// davMissing is the answer for a path that does not exist: status when
// the caller may stat the nearest existing folder above it, else what a
// refusal would be.
func (o *oracle) davMissing(s *oSubj, p string, status int) int {
	for a := p; ; a = parentPath(a) {
		if n := o.live(a); n != nil {
			if o.may(s, "stat", n) {
				return status
			}
			break
		}
		if a == "/" {
			break
		}
	}
	if s.anon {
		return 401
	}
	return 404
}

// davTarget: the node at p must exist and allow act.
func (o *oracle) davTarget(s *oSubj, p, act string, ok int) int {
	n := o.live(p)
	if n == nil {
		return o.davMissing(s, p, 404)
	}
	if !o.may(s, act, n) {
		return o.davRefuse(s, n)
	}
	return ok
}

// davCreate: a new name at p needs write on its folder; an existing node
// needs write on itself (PUT, LOCK) or answers exists (MKCOL).
func (o *oracle) davCreate(s *oSubj, p string, existing func(n *oNode) int, ok int) int {
	n, dir := o.live(p), parentPath(p)
	parent := o.live(dir)
	if n != nil && existing != nil {
		return existing(n)
	}
	switch {
	case parent == nil:
		return o.davMissing(s, dir, 409)
	case !o.may(s, "write", parent):
		return o.davRefuse(s, parent)
	case n != nil:
		return 405
	case !parent.dir:
		return 409
	}
	return ok
}

// davExpect is the answer to a WebDAV request on canonical path p. The
// writing methods carry a precondition that fails (412) once the request
// is authorized, so the matrix changes nothing; dst is the destination of
// MOVE and COPY.
func (o *oracle) davExpect(s *oSubj, method, p, dst string) int {
	if s.gone {
		return 401
	}
	switch method {
	case "OPTIONS": // needs no credentials and touches no data
		return 200
	case "GET", "HEAD":
		return o.davTarget(s, p, "read", 200)
	case "PROPFIND", "PROPFIND1":
		n := o.live(p)
		if n == nil {
			return o.davMissing(s, p, 404)
		}
		if !o.may(s, "read", n) {
			if !(n.dir && !s.anon && (n == o.root || o.may(s, "stat", n))) {
				return o.davRefuse(s, n)
			}
		}
		return 207
	case "PROPPATCH":
		return o.davTarget(s, p, "write", 207)
	case "UNLOCK":
		return o.davTarget(s, p, "write", 409)
	case "DELETE":
		if p == "/" {
			return 403
		}
		return o.davTarget(s, p, "delete", 412)
	case "PUT":
		if p == "/" {
			return 405
		}
		return o.davCreate(s, p, func(n *oNode) int {
			if !o.may(s, "write", n) {
				return o.davRefuse(s, n)
			}
			if n.dir {
				return 405
			}
			return 412
		}, 412)
	case "LOCK":
		if p == "/" {
			return o.davTarget(s, p, "write", 412)
		}
		return o.davCreate(s, p, func(n *oNode) int {
			if !o.may(s, "write", n) {
				return o.davRefuse(s, n)
			}
			return 412
		}, 412)
	case "MKCOL":
		if p == "/" {
			return 405
		}
		return o.davCreate(s, p, nil, 412)
	case "MOVE", "COPY":
		if p == "/" || dst == p {
			return 403
		}
		src := o.live(p)
		if src == nil {
			return o.davMissing(s, p, 404)
		}
		act := "read"
		if method == "MOVE" {
			act = "delete"
		}
		if !o.may(s, act, src) {
			return o.davRefuse(s, src)
		}
		parent := o.live(parentPath(dst))
		if parent == nil {
			return o.davMissing(s, parentPath(dst), 409)
		}
		if !o.may(s, "write", parent) {
			return o.davRefuse(s, parent)
		}
		if !parent.dir {
			return 409
		}
		if src.dir && (dst == p || strings.HasPrefix(dst, p+"/")) {
			return 403
		}
		return 412
	}
	panic("oracle: unknown WebDAV method " + method)
}

// davListing is what PROPFIND Depth 1 on the folder at p lists besides
// the folder itself: every live child when the caller may read the
// folder, else the children it may read.
func (o *oracle) davListing(s *oSubj, p string) map[string]bool {
	n := o.live(p)
	out := map[string]bool{}
	if n == nil || !n.dir {
		return out
	}
	all := o.may(s, "read", n)
	for _, c := range o.nodes {
		if c.parent == n && c.archived == 0 && !c.purged && (all || o.may(s, "read", c)) {
			out[c.path] = true
		}
	}
	return out
}

// --- tus ---

// tusCreate is the answer to creating an upload into the folder at the
// canonical path folder ("" when the spelling is invalid).
func (o *oracle) tusCreate(s *oSubj, folder string) int {
	switch {
	case s.anon || s.gone:
		return 401
	case folder == "":
		return 400
	}
	n := o.live(folder)
	if n == nil || !n.dir {
		// 409 only to who may stat the nearest folder above; a refusal
		// to everyone else, so creates cannot probe which paths exist.
		for a := parentPath(folder); ; a = parentPath(a) {
			if m := o.live(a); m != nil && m.dir {
				if o.may(s, "stat", m) {
					return 409
				}
				return 403
			}
			if a == "/" {
				return 403
			}
		}
	}
	if !o.may(s, "write", n) {
		return 403
	}
	return 201
}

// --- files API (addressed by id: 401 for anonymous refusals, 403 for
// others; an unknown id is 404) ---

func (o *oracle) apiDeny(s *oSubj) int {
	if s.anon {
		return 401
	}
	return 403
}

// apiExpect is the answer to a files API operation on the node n.
func (o *oracle) apiExpect(s *oSubj, op string, n *oNode) int {
	if s.gone {
		return 401
	}
	if n == nil || n.purged {
		return 404
	}
	act := map[string]string{"get": "stat", "content": "read", "contentHead": "read", "patch": "write", "putContent": "write",
		"archive": "delete", "restore": "delete", "purge": "delete", "tokensList": "share", "tokenCreate": "share",
		"tokenDelete": "share", "grantsList": "share", "grantCreate": "share", "grantDelete": "share",
		"publicSame": "share", "publicPHI": "share", "linkCreate": "share"}[op]
	if act == "" {
		panic("oracle: unknown API operation " + op)
	}
	allowed := o.may(s, act, n)
	if op == "get" {
		allowed = allowed || o.may(s, "view_files", nil)
	}
	if !allowed {
		return o.apiDeny(s)
	}
	switch op {
	case "get", "grantsList", "publicSame":
		return 200
	case "content", "contentHead":
		if n.dir || n.archived != 0 {
			return 404
		}
		return 200
	case "patch":
		if n.archived != 0 {
			return 404
		}
		return 200
	case "putContent":
		if n.dir || n.archived != 0 {
			return 404
		}
		return 200
	case "archive":
		if n.archived != 0 {
			return 404
		}
		return 204
	case "restore":
		if n.archived == 0 {
			return 404
		}
		return 200
	case "purge", "grantDelete":
		return 204
	case "tokensList":
		if n.dir {
			return 409
		}
		return 200
	case "tokenCreate":
		if n.dir {
			return 409
		}
		if n.archived != 0 {
			return 404
		}
		return 201
	case "tokenDelete": // of a token id that does not exist
		if n.dir {
			return 409
		}
		return 404
	case "grantCreate":
		return 201
	case "publicPHI": // public: true on a phi file or a folder holding one
		return 409
	case "linkCreate":
		if n.dir || n.archived != 0 {
			return 404
		}
		return 201
	}
	panic("unreachable")
}

// apiMove is the answer to PATCH {folder} of n into the folder at the
// canonical path folder ("" when the spelling is invalid). A folder path
// the caller may not stat answers as a missing one (404), as in WebDAV.
func (o *oracle) apiMove(s *oSubj, n *oNode, folder string) int {
	switch {
	case s.gone:
		return 401
	case !o.may(s, "write", n):
		return o.apiDeny(s)
	case n.archived != 0:
		return 404
	case folder == "":
		return 400
	}
	dst := o.live(folder)
	switch {
	case dst == nil:
		return 404
	case dst == n.parent:
		return 200
	case !o.may(s, "stat", dst):
		return 404
	case !o.may(s, "write", dst):
		return o.apiDeny(s)
	case !dst.dir:
		return 409
	case o.live(folder+"/"+baseName(n.path)) != nil:
		return 409
	}
	return 200
}

// holdsPHI reports whether n is, or (a folder) holds, a live phi file.
func (o *oracle) holdsPHI(n *oNode) bool {
	for _, x := range o.nodes {
		if x.phi && !x.purged && x.archived == 0 && within(x, n) {
			return true
		}
	}
	return false
}

// apiCreate is the answer to POST /api/v1/files into the folder at the
// canonical path folder ("" when the spelling is invalid): write on the
// deepest existing folder of the path, whose missing folders are then
// created. A path through a file is refused like a missing grant unless
// the caller may write there.
func (o *oracle) apiCreate(s *oSubj, folder string) (int, *oNode, []string) {
	if s.gone {
		return 401, nil, nil
	}
	if folder == "" {
		return 400, nil, nil
	}
	var missing []string
	p := folder
	var n *oNode
	for {
		if n = o.live(p); n != nil {
			break
		}
		missing = append([]string{baseName(p)}, missing...)
		p = parentPath(p)
	}
	if !o.may(s, "write", n) {
		return o.apiDeny(s), nil, nil
	}
	if !n.dir {
		return 409, nil, nil
	}
	return 201, n, missing
}

// apiVisible is what a listing of files shows the caller: live files it
// may stat (everything for admins).
func (o *oracle) apiVisible(s *oSubj) map[string]bool {
	out := map[string]bool{}
	for _, n := range o.nodes {
		if !n.dir && n.archived == 0 && !n.purged && (o.may(s, "view_files", nil) || o.may(s, "stat", n)) {
			out[n.id] = true
		}
	}
	return out
}

// move puts n (and everything below it) under parent as name; grants stay
// with the ids (README: a grant follows a node when it is moved).
func (o *oracle) move(n, parent *oNode, name string) {
	old, now := n.path, joinPath(parent.path, name)
	for _, x := range o.nodes {
		if within(x, n) && !x.purged {
			x.path = now + strings.TrimPrefix(x.path, old)
		}
	}
	n.parent = parent
}

// copyTree copies the live subtree of n under parent as name; the copies
// are new nodes, so no grant on the originals reaches them.
func (o *oracle) copyTree(n, parent *oNode, name string, id func(path string) string) {
	c := o.add(parent, name, id(joinPath(parent.path, name)), n.dir)
	c.phi = n.phi
	for _, x := range append([]*oNode(nil), o.nodes...) {
		if x.parent == n && x.archived == 0 && !x.purged {
			o.copyTree(x, c, baseName(x.path), id)
		}
	}
}

func joinPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}
