package tus

import (
	"context"
	"strings"

	"github.com/uptrace/bun"
)

// PendingBlobs reports which of keys are the published bytes of uploads
// that are still unfinished: an instance published them and failed (or
// died) before recording the file, and the upload's next HEAD records
// them. The store's orphan sweep must keep those blobs however old they
// are, or the client would have to start over; they become orphans when
// the upload expires. It has the type model.BlobReferences and returns
// database errors.
func (h *Handler) PendingBlobs(ctx context.Context, keys []string) ([]string, error) {
	var ids []string
	for _, k := range keys {
		if id, ok := strings.CutPrefix(k, BlobKey("")); ok && validID(id) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	var pending []string
	err := h.db.NewSelect().Table("upload_sessions").Column("id").
		Where("id IN (?)", bun.In(ids)).Where("status = ?", StatusNew).Scan(ctx, &pending)
	if err != nil {
		return nil, dbErr(err)
	}
	for i, id := range pending {
		pending[i] = BlobKey(id)
	}
	return pending, nil
}
