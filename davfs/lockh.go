package davfs

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/webdav"

	"github.com/filegate/filegate/model"
)

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// lock takes a new exclusive or shared lock (RFC 4918 section 9.10), or
// refreshes one when the body is empty. Locking an unmapped name creates
// an empty file there (201), as RFC 4918 section 7.3 says.
func (h *Handler) lock(q *request) {
	depth, err := parseDepth(q.r.Header.Get("Depth"))
	if err != nil || depth == 1 {
		http.Error(q.w, "LOCK needs Depth 0 or infinity", http.StatusBadRequest)
		return
	}
	timeout, err := parseTimeout(q.r.Header.Get("Timeout"))
	if err != nil {
		http.Error(q.w, "malformed Timeout header", http.StatusBadRequest)
		return
	}
	dir, base := model.SplitPath(q.path)
	paths := []string{q.path}
	if dir != "" {
		paths = append(paths, dir)
	}
	nodes, err := h.fs.liveMany(q.ctx, paths...)
	if err != nil {
		h.fail(q, err)
		return
	}
	n, parent := nodes[q.path], nodes[dir]
	switch {
	case n != nil:
		if !h.allowed(q, actWrite, n.Lineage) {
			h.refuse(q, actWrite, q.path, n.Lineage)
			return
		}
	case parent == nil:
		h.missing(q, dir, http.StatusConflict)
		return
	case !h.allowed(q, actWrite, parent.Lineage):
		h.refuse(q, actWrite, dir, parent.Lineage)
		return
	case !parent.IsDir:
		http.Error(q.w, "parent is not a folder", http.StatusConflict)
		return
	}
	li, isNew, err := parseLockInfo(limitXML(q.r.Body))
	if err != nil {
		h.fail(q, err)
		return
	}
	if !isNew {
		h.refresh(q, n, timeout)
		return
	}
	if n == nil {
		// Creating the empty file changes the parent's membership.
		locks, err := h.fs.locks.Around(q.ctx, []string{dir}, nil)
		if err != nil {
			h.fail(q, err)
			return
		}
		if err := h.checkLocks(q, locks, change{members: []string{dir}}); err != nil {
			h.lockedAnswer(q, err)
			return
		}
	}
	if q.ifh != nil {
		locks, err := h.fs.locks.Covering(q.ctx, q.path)
		if err != nil {
			h.fail(q, err)
			return
		}
		if ok, err := h.evalIf(q, locks); err != nil || !ok {
			if err != nil {
				h.fail(q, err)
				return
			}
			http.Error(q.w, "If header did not match", http.StatusPreconditionFailed)
			return
		}
	}
	l, err := h.fs.locks.Acquire(q.ctx, Lock{Root: q.path, Infinite: depth != 0, Shared: li.shared,
		OwnerXML: li.owner, Subject: q.actor.Subject, Timeout: timeout})
	if errors.Is(err, webdav.ErrLocked) {
		writeError(q.w, http.StatusLocked, "<D:no-conflicting-lock>"+hrefElem(h.cfg.Prefix, q.path, false)+"</D:no-conflicting-lock>")
		return
	}
	if err != nil {
		h.fail(q, err)
		return
	}
	status := http.StatusOK
	if n == nil {
		_, _, err := h.fs.store.Put(q.ctx, model.PutRequest{Parent: parent, Name: base, Body: bytes.NewReader(nil),
			Actor: q.actor.ID, Cond: model.Cond{IfNoneMatch: "*"}})
		if err != nil && !errors.Is(err, model.ErrPrecondition) {
			h.fs.locks.Release(q.ctx, l.Token)
			h.fail(q, err)
			return
		}
		status = http.StatusCreated
	}
	q.w.Header().Set("Lock-Token", "<"+l.Token+">")
	h.writeLockBody(q, status, &l)
}

// refresh extends the lock whose token the If header submits and which
// covers the request path; 412 when there is none.
func (h *Handler) refresh(q *request, n *model.Node, timeout time.Duration) {
	if n == nil {
		h.missing(q, q.path, http.StatusNotFound)
		return
	}
	for _, tok := range q.ifh.tokens() {
		l, err := h.fs.locks.Get(q.ctx, tok)
		if errors.Is(err, webdav.ErrNoSuchLock) {
			continue
		}
		if err != nil {
			h.fail(q, err)
			return
		}
		if !l.covers(q.path) || l.Subject != q.actor.Subject {
			continue
		}
		if l, err = h.fs.locks.Renew(q.ctx, tok, timeout); err != nil {
			if errors.Is(err, webdav.ErrNoSuchLock) {
				continue
			}
			h.fail(q, err)
			return
		}
		h.writeLockBody(q, http.StatusOK, &l)
		return
	}
	writeError(q.w, http.StatusPreconditionFailed, "<D:lock-token-matches-request-uri/>")
}

func (h *Handler) writeLockBody(q *request, status int, l *Lock) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n" + `<D:prop xmlns:D="DAV:"><D:lockdiscovery>`)
	h.writeActiveLock(&b, l)
	b.WriteString("</D:lockdiscovery></D:prop>\n")
	q.w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	q.w.Header().Set("Content-Length", itoa(int64(b.Len())))
	q.w.WriteHeader(status)
	q.w.Write(b.Bytes())
}

func (h *Handler) lockedAnswer(q *request, err error) {
	var le *lockedError
	if errors.As(err, &le) {
		writeError(q.w, http.StatusLocked, "<D:lock-token-submitted>"+hrefElem(h.cfg.Prefix, le.root, false)+"</D:lock-token-submitted>")
		return
	}
	h.fail(q, err)
}

// unlock releases the lock named by the Lock-Token header. The lock must
// cover the request path (else 409) and belong to the caller (else 403).
func (h *Handler) unlock(q *request) {
	v := strings.TrimSpace(q.r.Header.Get("Lock-Token"))
	if len(v) < 3 || v[0] != '<' || v[len(v)-1] != '>' {
		http.Error(q.w, "Lock-Token header required", http.StatusBadRequest)
		return
	}
	tok := v[1 : len(v)-1]
	if h.target(q, actWrite) == nil {
		return
	}
	l, err := h.fs.locks.Get(q.ctx, tok)
	if errors.Is(err, webdav.ErrNoSuchLock) || (err == nil && !l.covers(q.path)) {
		writeError(q.w, http.StatusConflict, "<D:lock-token-matches-request-uri/>")
		return
	}
	if err != nil {
		h.fail(q, err)
		return
	}
	if l.Subject != q.actor.Subject {
		writeError(q.w, http.StatusForbidden, "<D:lock-token-matches-request-uri/>")
		return
	}
	if err := h.fs.locks.Release(q.ctx, tok); err != nil && !errors.Is(err, webdav.ErrNoSuchLock) {
		h.fail(q, err)
		return
	}
	q.w.WriteHeader(http.StatusNoContent)
}
