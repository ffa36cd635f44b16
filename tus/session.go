package tus

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
)

// Session statuses. A partial upload (Upload-Concat: partial) stays new
// until a final upload consumes it.
const (
	StatusNew       = model.StatusNew
	StatusCompleted = model.StatusCompleted
)

// Session is an upload as the database keeps it.
type Session struct {
	bun.BaseModel `bun:"table:upload_sessions,alias:us"`

	ID           string            `bun:"id,pk"`
	Owner        string            `bun:"owner"`
	OwnerUserID  string            `bun:"owner_user_id"`
	FolderID     string            `bun:"folder_id"`
	FolderPath   string            `bun:"folder_path"`
	Name         string            `bun:"name"`
	Size         int64             `bun:"size"`
	SizeDeferred bool              `bun:"size_deferred"`
	Offset       int64             `bun:"upload_offset"`
	IsPartial    bool              `bun:"is_partial"`
	IsFinal      bool              `bun:"is_final"`
	Partials     string            `bun:"partials"`
	ConcatKey    *string           `bun:"concat_key"`
	Metadata     map[string]string `bun:"metadata,type:text"`
	SHA256       string            `bun:"sha256"`
	Status       string            `bun:"status"`
	NodeID       string            `bun:"node_id"`
	CreatedAt    time.Time         `bun:"created_at"`
	UpdatedAt    time.Time         `bun:"updated_at"`
	ExpiresMS    int64             `bun:"expires_ms"`
}

// Expires returns when the session expires.
func (s *Session) Expires() time.Time { return time.UnixMilli(s.ExpiresMS) }

// Path is where the file appears when the upload completes, or "" for a
// partial upload without a target.
func (s *Session) Path() string {
	if s.Name == "" || s.FolderPath == "" {
		return ""
	}
	return model.JoinPath(s.FolderPath, s.Name)
}

// blobKey is where a finished upload's bytes are published. It derives
// from the id, so that a crash between publishing and recording is
// recovered by finding the blob again.
func blobKey(id string) string { return BlobKey(id) }

// BlobKey is the blob key a finished upload with that id is published
// under. Blob stores that assemble uploads in place (S3 multipart) need it
// before the upload finishes.
func BlobKey(uploadID string) string { return "up-" + uploadID }

// concatKey identifies a final upload by its owner and parts.
func concatKey(owner string, parts []string) string {
	h := sha256.New()
	h.Write([]byte(owner))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func dbErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return model.ErrNotFound
	case isUnique(err):
		return fmt.Errorf("%w: %v", model.ErrExists, err)
	}
	return err
}

func isUnique(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "23505") || strings.Contains(msg, "UNIQUE constraint failed") ||
		strings.Contains(msg, "duplicate key value")
}

func (h *Handler) loadSession(ctx context.Context, id string) (*Session, error) {
	s := new(Session)
	if err := h.db.NewSelect().Model(s).Where("us.id = ?", id).Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	return s, nil
}

func (h *Handler) insertSession(ctx context.Context, s *Session) error {
	_, err := h.db.NewInsert().Model(s).Exec(ctx)
	return dbErr(err)
}

// touch records progress and pushes the expiry out.
func (h *Handler) touch(ctx context.Context, s *Session) error {
	t := now()
	s.UpdatedAt = t
	s.ExpiresMS = t.Add(h.cfg.TTL).UnixMilli()
	_, err := h.db.NewUpdate().Model(s).ModelTableExpr("upload_sessions").
		Column("upload_offset", "updated_at", "expires_ms").Where("id = ?", s.ID).Exec(ctx)
	return dbErr(err)
}

func (h *Handler) deleteSession(ctx context.Context, id string) error {
	_, err := h.db.NewDelete().Table("upload_sessions").Where("id = ?", id).Exec(ctx)
	return dbErr(err)
}

// Pending lists the unfinished uploads of a subject, newest first, for
// the files API's status filter: they are the files with status "new".
// Partial uploads of a concatenation are not listed. It returns the
// database's error.
func (h *Handler) Pending(ctx context.Context, subject string) ([]*Session, error) {
	var out []*Session
	err := h.db.NewSelect().Model(&out).Where("us.owner = ?", subject).
		Where("us.status = ?", StatusNew).Where("us.is_partial = ?", false).
		Order("us.created_at DESC").Scan(ctx)
	return out, dbErr(err)
}

// quotaUsed returns the bytes the user's live files and pending uploads
// count against their quota.
func (h *Handler) quotaUsed(ctx context.Context, userID string) (int64, error) {
	files, err := h.store.Repo.QuotaUsed(ctx, userID)
	if err != nil {
		return 0, err
	}
	var pending sql.NullInt64
	err = h.db.NewSelect().Table("upload_sessions").
		ColumnExpr("SUM(CASE WHEN size_deferred THEN upload_offset ELSE size END)").
		Where("owner_user_id = ?", userID).Where("status = ?", StatusNew).Scan(ctx, &pending)
	if err != nil {
		return 0, dbErr(err)
	}
	return files + pending.Int64, nil
}

// errQuota is answered 413: the client should not retry.
var errQuota = tusError(413, "ERR_QUOTA_EXCEEDED", "the upload would exceed your storage quota")

func (h *Handler) checkQuota(ctx context.Context, c Caller, more int64) error {
	if c.QuotaBytes <= 0 || c.UserID == "" {
		return nil
	}
	used, err := h.quotaUsed(ctx, c.UserID)
	if err != nil {
		return err
	}
	if used+more > c.QuotaBytes {
		return errQuota
	}
	return nil
}
