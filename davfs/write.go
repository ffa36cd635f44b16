package davfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/filegate/filegate/model"
)

// change lists what a request would modify, for the lock checks.
type change struct {
	paths   []string // resources written (their own and inherited locks count)
	members []string // folders gaining or losing a member
	below   []string // paths whose subtree is removed or replaced
}

// lockedError is a write refused because a lock's token was not
// submitted; root is the lock's root, named in the 423 body.
type lockedError struct{ root string }

func (e *lockedError) Error() string { return "locked: " + e.root }

// preconditions checks, in this order, that every lock on what the
// request changes has its token submitted by its owner (else 423), then
// that the If header holds (else 412). It answers and reports false when
// the request must stop.
func (h *Handler) preconditions(q *request, c change) bool {
	var locks []Lock
	if !q.noLocks {
		var lookup []string
		lookup = append(lookup, c.paths...)
		lookup = append(lookup, c.members...)
		var err error
		if locks, err = h.fs.locks.Around(q.ctx, lookup, c.below); err != nil {
			h.fail(q, err)
			return false
		}
	}
	lockErr := h.checkLocks(q, locks, c)
	if q.ifh != nil {
		ok, err := h.evalIf(q, locks)
		if err != nil {
			h.fail(q, err)
			return false
		}
		// A false If header is 412 (RFC 4918 section 10.4.1), unless it
		// offered lock tokens and none of them unlocks the resource: then
		// the lock is what stops the request (423), as clients expect.
		if !ok && (lockErr == nil || !q.ifh.offersTokens()) {
			http.Error(q.w, "If header did not match", http.StatusPreconditionFailed)
			return false
		}
	}
	if lockErr != nil {
		h.lockedAnswer(q, lockErr)
		return false
	}
	return true
}

// checkLocks returns a *lockedError naming the first lock that applies to
// the change and whose token the request did not submit. Of several shared
// locks on one resource, submitting any one is enough.
func (h *Handler) checkLocks(q *request, locks []Lock, c change) error {
	submitted := map[string]bool{}
	for _, t := range q.ifh.tokens() {
		submitted[t] = true
	}
	ok := func(l Lock) bool { return submitted[l.Token] && l.Subject == q.actor.Subject }
	relevant := func(l Lock) bool {
		for _, p := range c.paths {
			if l.covers(p) {
				return true
			}
		}
		for _, m := range c.members {
			if l.covers(m) {
				return true
			}
		}
		for _, b := range c.below {
			if model.IsWithin(l.Root, b) {
				return true
			}
		}
		return false
	}
	var sharedMissing *Lock
	sharedOK := false
	for i, l := range locks {
		if !relevant(l) {
			continue
		}
		switch {
		case ok(l) && l.Shared:
			sharedOK = true
		case ok(l):
		case l.Shared:
			sharedMissing = &locks[i]
		default:
			return &lockedError{root: l.Root}
		}
	}
	if sharedMissing != nil && !sharedOK {
		return &lockedError{root: sharedMissing.Root}
	}
	return nil
}

// evalIf evaluates the If header: true when any list holds. locks are the
// locks already fetched for the request's own paths; resources named by
// tagged lists are looked up as needed.
func (h *Handler) evalIf(q *request, locks []Lock) (bool, error) {
	nodes := map[string]*model.Node{}
	lockCache := map[string][]Lock{}
	for _, l := range q.ifh.lists {
		p := q.path
		if l.tag != "" {
			var ok bool
			if p, ok = h.tagPath(q, l.tag); !ok {
				continue
			}
		}
		n, seen := nodes[p]
		if !seen {
			var err error
			n, err = h.fs.live(q.ctx, p)
			if err != nil && !errors.Is(err, model.ErrNotFound) {
				return false, err
			}
			nodes[p] = n
		}
		ls, seen := lockCache[p]
		if !seen {
			if p == q.path {
				ls = locks
			} else {
				var err error
				if ls, err = h.fs.locks.Covering(q.ctx, p); err != nil {
					return false, err
				}
			}
			lockCache[p] = ls
		}
		if listHolds(l, p, n, ls) {
			return true, nil
		}
	}
	return false, nil
}

func listHolds(l ifList, p string, n *model.Node, locks []Lock) bool {
	for _, c := range l.conds {
		var match bool
		if c.token != "" {
			for _, lk := range locks {
				if lk.Token == c.token && lk.covers(p) {
					match = true
					break
				}
			}
		} else {
			match = n != nil && etagMatch(c.etag, n.ETag)
		}
		if match == c.not {
			return false
		}
	}
	return true
}

// tagPath turns an If header resource tag into a clean path in this
// tree; ok=false for another host or a path outside the prefix.
func (h *Handler) tagPath(q *request, tag string) (string, bool) {
	u, err := url.Parse(tag)
	if err != nil || (u.Host != "" && !strings.EqualFold(u.Host, q.r.Host)) {
		return "", false
	}
	rel, ok := strings.CutPrefix(u.Path, h.cfg.Prefix)
	if !ok {
		return "", false
	}
	p, err := model.CleanPath(rel)
	return p, err == nil
}

// nodeAndParent looks up the request's node and its folder dir in one
// query, which also tells whether any lock bears on them (q.noLocks). It
// answers and reports false on a store error.
func (h *Handler) nodeAndParent(q *request, dir string) (n, parent *model.Node, ok bool) {
	nodes, noLocks, err := h.fs.lookup(q.ctx, []string{q.path, dir}, nil, true)
	if err != nil {
		h.fail(q, err)
		return nil, nil, false
	}
	q.noLocks = noLocks
	return nodes[q.path], nodes[dir], true
}

// put stores a request body as a file's whole content. The body is read
// only after authorization and the lock, If and If-Match checks, and
// streamed into a new blob that replaces the old content only once it is
// complete: a cut-off, cancelled or failing upload leaves the old file as
// it was.
func (h *Handler) put(q *request) {
	if q.path == "/" {
		http.Error(q.w, "the root is a folder", http.StatusMethodNotAllowed)
		return
	}
	if q.r.Header.Get("Content-Range") != "" {
		http.Error(q.w, "partial PUT is not supported", http.StatusBadRequest)
		return
	}
	var mtime time.Time
	if v := q.r.Header.Get("X-OC-Mtime"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1e11 {
			http.Error(q.w, "malformed X-OC-Mtime", http.StatusBadRequest)
			return
		}
		sec := int64(f)
		mtime = time.Unix(sec, int64((f-float64(sec))*1e9)).UTC()
	}
	if max := h.cfg.MaxUploadBytes; max > 0 && q.r.ContentLength > max {
		http.Error(q.w, "file too large", http.StatusRequestEntityTooLarge)
		return
	}
	dir, base := model.SplitPath(q.path)
	n, parent, ok := h.nodeAndParent(q, dir)
	if !ok {
		return
	}
	c := change{paths: []string{q.path}}
	switch {
	case n != nil:
		if !h.allowed(q, actWrite, n.Lineage) {
			h.refuse(q, actWrite, q.path, n.Lineage)
			return
		}
		if n.IsDir {
			http.Error(q.w, "a folder has that name", http.StatusMethodNotAllowed)
			return
		}
	case parent == nil:
		h.missing(q, dir, http.StatusConflict)
		return
	default:
		if !h.allowed(q, actWrite, parent.Lineage) {
			h.refuse(q, actWrite, dir, parent.Lineage)
			return
		}
		if !parent.IsDir {
			http.Error(q.w, "parent is not a folder", http.StatusConflict)
			return
		}
		c.members = []string{dir}
	}
	cond, ok := httpConditions(q.r, n)
	if !ok {
		http.Error(q.w, "precondition failed", http.StatusPreconditionFailed)
		return
	}
	if !h.preconditions(q, c) {
		return
	}
	cond.Quota = q.actor.Quota
	if err := h.fs.store.QuotaRoom(q.ctx, cond.Quota, n, q.r.ContentLength); err != nil {
		h.fail(q, err) // before the body: no point taking what cannot be kept
		return
	}
	body := &fullBody{r: q.r.Body, want: q.r.ContentLength}
	checked := time.Now()
	out, created, err := h.fs.store.Put(q.ctx, model.PutRequest{
		Parent: parent, Name: base, Body: body, Actor: q.actor.ID, Cond: cond,
		Meta: model.FileMeta{ModTime: mtime}, MaxSize: h.cfg.MaxUploadBytes,
		BeforeRecord: func(ctx context.Context) error {
			if time.Since(checked) < lockRecheckAfter {
				return nil
			}
			return h.recheckLocks(ctx, q, c)
		},
	})
	if err != nil {
		var le *lockedError
		switch {
		case errors.As(err, &le):
			h.lockedAnswer(q, le)
		case errors.Is(err, model.ErrConflict):
			http.Error(q.w, "a folder has that name", http.StatusMethodNotAllowed)
		default:
			h.fail(q, err)
		}
		return
	}
	q.w.Header().Set("ETag", out.ETag)
	if !mtime.IsZero() {
		q.w.Header().Set("X-OC-MTime", "accepted")
	}
	q.w.Header().Set("Content-Length", "0")
	if created {
		q.w.WriteHeader(http.StatusCreated)
		return
	}
	q.w.WriteHeader(http.StatusNoContent)
}

// lockRecheckAfter is how long a PUT's body may take before the locks are
// checked again when it is complete. A lock another client takes while a
// large body uploads must stop it from replacing the content, as it would
// have had the body arrived after the lock; a body faster than this
// leaves the same window the commit itself does, and spares small writes
// a query.
const lockRecheckAfter = 100 * time.Millisecond

// recheckLocks checks the locks that apply to change c again, as
// preconditions did before the body came, and returns a *lockedError when
// one taken since blocks the request.
func (h *Handler) recheckLocks(ctx context.Context, q *request, c change) error {
	lookup := append(append([]string(nil), c.paths...), c.members...)
	locks, err := h.fs.locks.Around(ctx, lookup, c.below)
	if err != nil {
		return err
	}
	return h.checkLocks(q, locks, c)
}

// httpConditions checks If-Match and If-None-Match against the current
// node and turns them into a model.Cond, which the store checks again
// inside the transaction that switches the content.
func httpConditions(r *http.Request, n *model.Node) (model.Cond, bool) {
	var c model.Cond
	if v := strings.TrimSpace(r.Header.Get("If-Match")); v != "" {
		if v == "*" {
			c.IfMatch = "*"
			return c, n != nil
		}
		for _, tag := range strings.Split(v, ",") {
			tag = strings.TrimSpace(tag)
			if n != nil && tag == n.ETag {
				c.IfMatch = tag
			}
		}
		if c.IfMatch == "" {
			return c, false
		}
	}
	if v := strings.TrimSpace(r.Header.Get("If-None-Match")); v != "" {
		if v == "*" {
			c.IfNoneMatch = "*"
			return c, n == nil
		}
		for _, tag := range strings.Split(v, ",") {
			if n != nil && etagMatch(strings.TrimSpace(tag), n.ETag) {
				return c, false
			}
		}
		if n != nil {
			c.IfMatch = n.ETag // the content checked must be the content replaced
		}
	}
	return c, true
}

// fullBody fails a body that ends before its Content-Length, so the store
// never commits a truncated upload even if the transport reports a clean
// end of stream.
type fullBody struct {
	r    io.Reader
	want int64 // -1 when unknown (chunked)
	got  int64
}

func (b *fullBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.got += int64(n)
	if err == io.EOF && b.want >= 0 && b.got != b.want {
		return n, fmt.Errorf("%w: body ended after %d of %d bytes", io.ErrUnexpectedEOF, b.got, b.want)
	}
	return n, err
}

// mkcol creates a folder. A body is refused with 415, an existing name
// with 405 and a missing parent with 409, as RFC 4918 section 9.3 says.
func (h *Handler) mkcol(q *request) {
	if q.r.ContentLength > 0 || len(q.r.TransferEncoding) > 0 {
		http.Error(q.w, "MKCOL with a body is not supported", http.StatusUnsupportedMediaType)
		return
	}
	if q.path == "/" {
		http.Error(q.w, "exists", http.StatusMethodNotAllowed)
		return
	}
	dir, base := model.SplitPath(q.path)
	n, parent, ok := h.nodeAndParent(q, dir)
	if !ok {
		return
	}
	switch {
	case parent == nil:
		h.missing(q, dir, http.StatusConflict)
		return
	case !h.allowed(q, actWrite, parent.Lineage):
		h.refuse(q, actWrite, dir, parent.Lineage)
		return
	case n != nil:
		http.Error(q.w, "the name exists", http.StatusMethodNotAllowed)
		return
	case !parent.IsDir:
		http.Error(q.w, "parent is not a folder", http.StatusConflict)
		return
	}
	if !h.preconditions(q, change{paths: []string{q.path}, members: []string{dir}}) {
		return
	}
	if _, err := h.fs.repo.CreateFolder(q.ctx, parent, base, q.actor.ID); err != nil {
		if errors.Is(err, model.ErrExists) {
			http.Error(q.w, "the name exists", http.StatusMethodNotAllowed)
			return
		}
		h.fail(q, err)
		return
	}
	q.w.Header().Set("Content-Length", "0")
	q.w.WriteHeader(http.StatusCreated)
}

// delete archives a file or a whole folder tree (restorable through the
// files API) and releases the locks on it.
func (h *Handler) delete(q *request) {
	depth, err := parseDepth(q.r.Header.Get("Depth"))
	if err != nil || (depth != depthAbsent && depth != depthInfinity) {
		http.Error(q.w, "DELETE needs Depth: infinity", http.StatusBadRequest)
		return
	}
	if q.r.URL.Fragment != "" {
		http.Error(q.w, "fragment in URL", http.StatusBadRequest)
		return
	}
	if q.path == "/" {
		http.Error(q.w, "the root cannot be deleted", http.StatusForbidden)
		return
	}
	n := h.target(q, actDelete)
	if n == nil {
		return
	}
	dir, _ := model.SplitPath(q.path)
	if !h.preconditions(q, change{paths: []string{q.path}, members: []string{dir}, below: []string{q.path}}) {
		return
	}
	if err := h.fs.remove(q.ctx, n); err != nil {
		h.fail(q, err)
		return
	}
	q.w.WriteHeader(http.StatusNoContent)
}
