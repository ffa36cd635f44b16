package davfs

import (
	"errors"
	"net/http"

	"github.com/filegate/filegate/model"
)

// copyMove handles COPY (read on the source, write on the destination's
// folder) and MOVE (delete on the source, write on the destination's
// folder). MOVE changes metadata only; COPY shares or server-side copies
// blobs and copies dead properties. An existing destination is archived
// when Overwrite allows it, else the request fails with 412.
func (h *Handler) copyMove(q *request) {
	isMove := q.r.Method == "MOVE"
	depth, err := parseDepth(q.r.Header.Get("Depth"))
	overwrite, err2 := parseOverwrite(q.r.Header.Get("Overwrite"))
	if err != nil || err2 != nil || depth == 1 || (isMove && depth == 0) {
		http.Error(q.w, "bad Depth or Overwrite header", http.StatusBadRequest)
		return
	}
	dst, ok := h.destination(q)
	if !ok {
		return
	}
	if q.path == "/" {
		http.Error(q.w, "the root cannot be copied or moved", http.StatusForbidden)
		return
	}
	if dst == "/" || dst == q.path {
		http.Error(q.w, "source and destination are the same", http.StatusForbidden)
		return
	}
	dstDir, dstName := model.SplitPath(dst)
	srcDir, _ := model.SplitPath(q.path)
	nodes, noLocks, err := h.fs.lookup(q.ctx, []string{q.path, dst, dstDir}, []string{q.path, dst}, true)
	if err != nil {
		h.fail(q, err)
		return
	}
	q.noLocks = noLocks
	src, old, parent := nodes[q.path], nodes[dst], nodes[dstDir]
	if src == nil {
		h.missing(q, q.path, http.StatusNotFound)
		return
	}
	srcAct := actRead
	if isMove {
		srcAct = actDelete
	}
	if !h.allowed(q, srcAct, src.Lineage) {
		h.refuse(q, srcAct, q.path, src.Lineage)
		return
	}
	if parent == nil {
		h.missing(q, dstDir, http.StatusConflict)
		return
	}
	if !h.allowed(q, actWrite, parent.Lineage) {
		h.refuse(q, actWrite, dstDir, parent.Lineage)
		return
	}
	if !parent.IsDir {
		http.Error(q.w, "destination folder is a file", http.StatusConflict)
		return
	}
	if src.IsDir && model.IsWithin(dst, q.path) {
		http.Error(q.w, "a folder cannot go inside itself", http.StatusForbidden)
		return
	}
	if old != nil && !overwrite {
		http.Error(q.w, "destination exists", http.StatusPreconditionFailed)
		return
	}
	c := change{paths: []string{dst}, members: []string{dstDir}}
	if old != nil {
		c.below = []string{dst}
	}
	if isMove {
		c.paths = append(c.paths, q.path)
		c.members = append(c.members, srcDir)
		c.below = append(c.below, q.path)
	}
	if !h.preconditions(q, c) {
		return
	}
	var replaced bool
	if isMove {
		_, replaced, err = h.fs.move(q.ctx, src, parent, dstName, overwrite)
	} else {
		replaced, err = h.copy(q, src, parent, dstName, depth, overwrite)
	}
	if err != nil {
		if errors.Is(err, model.ErrExists) {
			http.Error(q.w, "destination exists", http.StatusPreconditionFailed)
			return
		}
		h.fail(q, err)
		return
	}
	if replaced {
		q.w.WriteHeader(http.StatusNoContent)
		return
	}
	q.w.WriteHeader(http.StatusCreated)
}

// copy copies src to parent/name: a file, a folder with everything below
// it, or with Depth 0 a folder alone. Dead properties go along.
func (h *Handler) copy(q *request, src, parent *model.Node, name string, depth int, overwrite bool) (bool, error) {
	var out *model.Node
	var replaced bool
	var err error
	if src.IsDir && depth == 0 {
		out, replaced, err = h.fs.copyShallow(q, parent, name, overwrite)
	} else {
		out, replaced, err = h.fs.store.Copy(q.ctx, src, parent, name, q.actor.ID, q.actor.Quota, overwrite)
	}
	if err != nil {
		return false, err
	}
	if src.IsDir && depth == 0 {
		src = &model.Node{ID: src.ID} // its own properties only
	}
	return replaced, h.fs.props.copyTree(q.ctx, h.fs.repo, src, out)
}

// copyShallow makes an empty folder at parent/name, archiving what was
// there when overwrite allows.
func (f *FS) copyShallow(q *request, parent *model.Node, name string, overwrite bool) (*model.Node, bool, error) {
	replaced := false
	if old, err := f.live(q.ctx, model.JoinPath(parent.Path, name)); err == nil {
		if !overwrite {
			return nil, false, model.ErrExists
		}
		if _, err := f.repo.Archive(q.ctx, old.ID); err != nil {
			return nil, false, err
		}
		replaced = true
	} else if !errors.Is(err, model.ErrNotFound) {
		return nil, false, err
	}
	n, err := f.repo.CreateFolder(q.ctx, parent, name, q.actor.ID)
	return n, replaced, err
}
