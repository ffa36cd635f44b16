package tus

import (
	"context"
	"time"
)

// Sweep removes the uploads that expired before at: their partial bytes
// and their rows. Finished uploads lose only their row (the file stays).
// An upload locked by a running request is left for the next sweep, and
// so is one whose expiry moved since it was listed. Published blobs that
// no file refers to are left to the store's orphan sweep, which checks
// the nodes first. It returns how many uploads it removed, and the first
// database or blob store error, which stops the sweep.
func (h *Handler) Sweep(ctx context.Context, at time.Time) (int, error) {
	removed := 0
	after := ""
	for {
		var ids []string
		err := h.db.NewSelect().Table("upload_sessions").Column("id").
			Where("expires_ms < ?", at.UnixMilli()).Where("id > ?", after).
			Order("id").Limit(200).Scan(ctx, &ids)
		if err != nil {
			return removed, dbErr(err)
		}
		for _, id := range ids {
			ok, err := h.sweepOne(ctx, id, at)
			if err != nil {
				return removed, err
			}
			if ok {
				removed++
			}
		}
		if len(ids) < 200 {
			return removed, nil
		}
		after = ids[len(ids)-1]
	}
}

func (h *Handler) sweepOne(ctx context.Context, id string, at time.Time) (bool, error) {
	lk, err := h.locks.acquire(ctx, id, lockTry, nil)
	if err != nil {
		return false, nil // busy: not abandoned after all
	}
	defer lk.Unlock()
	s, err := h.loadSession(ctx, id)
	if err != nil || s.ExpiresMS >= at.UnixMilli() {
		return false, nil
	}
	if s.Status == StatusNew {
		if err := h.store.Blobs.Discard(ctx, id); err != nil {
			return false, err
		}
	}
	if err := h.deleteSession(ctx, id); err != nil {
		return false, err
	}
	return true, nil
}
