package model

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Token levels: full allows read, write, delete, share and managing
// tokens; read allows the content and the metadata without tokens.
const (
	LevelFull     = "full"
	LevelRead     = "read"
	LevelMetadata = "metadata"
)

// FileToken is a per-file bearer credential. The secret is never stored.
type FileToken struct {
	bun.BaseModel `bun:"table:file_tokens"`

	ID         string     `bun:"id,pk"`
	NodeID     string     `bun:"node_id"`
	Level      string     `bun:"level"`
	SecretHash string     `bun:"secret_hash"`
	CreatedBy  string     `bun:"created_by"`
	CreatedAt  time.Time  `bun:"created_at"`
	ExpiresAt  *time.Time `bun:"expires_at"`
}

// Expired reports whether the token has passed its expiry.
func (t *FileToken) Expired(now time.Time) bool {
	return t.ExpiresAt != nil && !now.Before(*t.ExpiresAt)
}

// InsertToken mints a token for a node inside tx (so the caller can write
// its Casbin grant in the same transaction) and returns the row and the
// credential, shown once. It returns ErrInvalid for an unknown level.
func (r *Repo) InsertToken(ctx context.Context, tx bun.IDB, nodeID, level, createdBy string, expires *time.Time) (*FileToken, string, error) {
	if level != LevelFull && level != LevelRead {
		return nil, "", fmt.Errorf("%w: accessLevel must be full or read", ErrInvalid)
	}
	cred, id, hash := NewSecret(TokenPrefix)
	t := &FileToken{ID: id, NodeID: nodeID, Level: level, SecretHash: hash, CreatedBy: createdBy,
		CreatedAt: r.now(), ExpiresAt: expires}
	if _, err := tx.NewInsert().Model(t).Exec(ctx); err != nil {
		return nil, "", dbErr(err)
	}
	return t, cred, nil
}

// Tokens lists a node's tokens (without secrets), oldest first.
func (r *Repo) Tokens(ctx context.Context, nodeID string) ([]*FileToken, error) {
	var ts []*FileToken
	if err := r.db.NewSelect().Model(&ts).Where("node_id = ?", nodeID).Order("created_at", "id").Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	return ts, nil
}

// DeleteToken removes a token inside tx. It refuses, with ErrConflict, to
// remove a node's last full token. The node row is locked first (FOR UPDATE
// on PostgreSQL; SQLite write transactions are already serial), so two
// concurrent deletes of the last two full tokens leave one. It returns the
// deleted row, and ErrNotFound.
func (r *Repo) DeleteToken(ctx context.Context, tx bun.IDB, nodeID, tokenID string) (*FileToken, error) {
	lock := tx.NewSelect().Table("nodes").Column("id").Where("id = ?", nodeID)
	if IsPostgres(tx) {
		lock = lock.For("UPDATE")
	}
	var locked string
	if err := lock.Scan(ctx, &locked); err != nil {
		return nil, dbErr(err)
	}
	t := new(FileToken)
	if err := tx.NewSelect().Model(t).Where("id = ?", tokenID).Where("node_id = ?", nodeID).Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	if t.Level == LevelFull {
		n, err := tx.NewSelect().Model((*FileToken)(nil)).Where("node_id = ?", nodeID).
			Where("level = ?", LevelFull).Count(ctx)
		if err != nil {
			return nil, dbErr(err)
		}
		if n <= 1 {
			return nil, fmt.Errorf("%w: the last full token cannot be removed", ErrConflict)
		}
	}
	if _, err := tx.NewDelete().Model(t).WherePK().Exec(ctx); err != nil {
		return nil, dbErr(err)
	}
	return t, nil
}

// TokenByCredential authenticates a file token. It returns ErrNotFound for
// a malformed, unknown, wrong or expired token, without saying which.
func (r *Repo) TokenByCredential(ctx context.Context, credential string) (*FileToken, error) {
	id, secret, ok := ParseSecret(TokenPrefix, credential)
	if !ok {
		return nil, ErrNotFound
	}
	t := new(FileToken)
	if err := r.db.NewSelect().Model(t).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	if !SecretMatches(t.SecretHash, secret) || t.Expired(time.Now()) {
		return nil, ErrNotFound
	}
	return t, nil
}
