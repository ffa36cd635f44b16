package tus

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob"
)

var (
	errNotPartial = tusError(http.StatusBadRequest, "ERR_INVALID_CONCAT", "Upload-Concat may only list partial uploads")
	errPartUsed   = tusError(http.StatusBadRequest, "ERR_INVALID_CONCAT", "a partial upload in Upload-Concat was already concatenated")
	errPartTwice  = tusError(http.StatusBadRequest, "ERR_INVALID_CONCAT", "Upload-Concat lists a partial upload twice")
)

// ConcatUploads writes the parts, in order, as the final upload's bytes
// and records the file. The parts are the caller's own (GetUpload hides
// everyone else's). It runs under the final upload's lock, so concurrent
// retries of one final POST make one file; a retry after success finds
// the upload completed and does nothing.
func (u *upload) ConcatUploads(ctx context.Context, parts []handler.Upload) error {
	ctx = context.WithoutCancel(ctx)
	h := u.h
	lk, err := h.locks.acquire(ctx, u.s.ID, lockWait, nil)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	if s, err := h.loadSession(ctx, u.s.ID); err != nil {
		return modelErr(err)
	} else {
		u.s = s
	}
	if u.s.Status == StatusCompleted {
		u.offset = u.s.Size
		return nil
	}
	seen := map[string]bool{}
	ps := make([]*upload, 0, len(parts))
	for _, p := range parts {
		pu := p.(*upload)
		switch {
		case !pu.s.IsPartial:
			return errNotPartial
		case pu.s.Status != StatusNew:
			return errPartUsed
		case seen[pu.s.ID]:
			return errPartTwice
		}
		seen[pu.s.ID] = true
		ps = append(ps, pu)
	}
	for _, pu := range ps {
		plk, err := h.locks.acquire(ctx, pu.s.ID, lockTry, nil)
		if err != nil {
			return err
		}
		defer plk.Unlock()
	}
	w, err := h.store.Blobs.Create(ctx, blobKey(u.s.ID))
	if err != nil {
		return modelErr(model.BlobErr(err))
	}
	defer w.Abort()
	for _, pu := range ps {
		if err := h.copyPart(ctx, w, pu.s.ID); err != nil {
			return err
		}
	}
	info, err := w.Commit(ctx)
	if err != nil {
		return modelErr(model.BlobErr(err))
	}
	if info.Size != u.s.Size {
		h.deleteBlob(ctx, blobKey(u.s.ID))
		return handler.ErrUploadNotFinished
	}
	if err := u.record(ctx, model.Content{BlobKey: blobKey(u.s.ID), Size: info.Size, SHA256: info.SHA256}, nil, true); err != nil {
		return err
	}
	ids := make([]string, 0, len(ps))
	for _, pu := range ps {
		ids = append(ids, pu.s.ID)
	}
	if _, err := h.db.NewUpdate().Table("upload_sessions").Set("status = ?", StatusCompleted).
		Set("updated_at = ?", now()).Where("id IN (?)", bun.In(ids)).Exec(ctx); err != nil {
		h.log.Warn("tus: mark parts concatenated", "err", err)
	}
	for _, id := range ids {
		h.deleteBlob(ctx, blobKey(id))
	}
	return nil
}

// copyPart appends a part's bytes to w. Partial blobs cannot be read, so
// the part is published first (under a key derived from its id, which a
// retry after a crash finds again).
func (h *Handler) copyPart(ctx context.Context, w io.Writer, id string) error {
	if _, err := h.store.Blobs.Publish(ctx, id, blobKey(id)); err != nil && !errors.Is(err, blob.ErrNotFound) {
		return modelErr(model.BlobErr(err))
	}
	r, err := h.store.Blobs.Open(ctx, blobKey(id))
	if errors.Is(err, blob.ErrNotFound) {
		// An empty part never had a byte appended.
		return nil
	}
	if err != nil {
		return modelErr(model.BlobErr(err))
	}
	defer r.Close()
	if _, err := io.Copy(w, r); err != nil {
		return modelErr(model.BlobErr(err))
	}
	return nil
}
