package model

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Move renames n and/or puts it under newParent, changing only metadata:
// the blob is never copied, and the node keeps its id, so its grants and
// tokens follow it. When a live node already has the destination name,
// overwrite archives it first (its id is returned as replaced); otherwise
// the move fails with ErrExists. It returns ErrConflict for a move of the
// root or into the node's own subtree, ErrNotFound when n or newParent is
// gone, and ErrInvalid for a bad name.
func (r *Repo) Move(ctx context.Context, n *Node, newParent *Node, newName string, overwrite bool) (moved *Node, replaced *Node, err error) {
	if newName, err = CleanName(newName); err != nil {
		return nil, nil, err
	}
	if n.ID == RootID {
		return nil, nil, fmt.Errorf("%w: the root cannot move", ErrConflict)
	}
	if newParent.ID == n.ID || IsWithin(newParent.Lineage, n.Lineage) {
		return nil, nil, fmt.Errorf("%w: a folder cannot move into itself", ErrConflict)
	}
	now := r.now()
	err = retryRaced(func() error {
		return r.InTx(ctx, func(ctx context.Context, tx bun.Tx) error {
			moved, replaced = nil, nil
			cur, err := lockSubtree(ctx, tx, n.ID)
			if err != nil {
				return err
			}
			if cur.Archived() || cur.Status != StatusCompleted {
				return ErrNotFound
			}
			np, err := lockParent(ctx, tx, newParent.ID)
			if err != nil {
				return err
			}
			if IsWithin(np.Lineage, cur.Lineage) {
				return fmt.Errorf("%w: a folder cannot move into itself", ErrConflict)
			}
			newPath := JoinPath(np.Path, newName)
			if newPath == cur.Path {
				moved = cur
				return nil
			}
			dst, err := liveByPath(ctx, tx, newPath)
			switch {
			case err == nil && !overwrite:
				return ErrExists
			case err == nil:
				if err := archiveTree(ctx, tx, dst, now); err != nil {
					return err
				}
				replaced = dst
			case err != ErrNotFound:
				return err
			}
			newLineage := np.Lineage + "/" + cur.ID
			if cur.IsDir {
				lo, hi := descendantRange(cur.Lineage)
				_, err = tx.NewUpdate().Table("nodes").
					Set("path = ? || substr(path, ?)", newPath, len(cur.Path)+1).
					Set("lineage = ? || substr(lineage, ?)", newLineage, len(cur.Lineage)+1).
					Where("lineage > ?", lo).Where("lineage < ?", hi).Exec(ctx)
				if err != nil {
					return err
				}
			}
			cur.ParentID, cur.Name, cur.Path, cur.Lineage = np.ID, newName, newPath, newLineage
			cur.UpdatedAt = now
			cur.Version++
			if cur.IsDir {
				cur.ETag = folderETag(cur.ID, cur.Version)
			}
			moved = cur
			// A concurrent move of the same node would leave its subtree
			// where the other move put it: the version check rolls this one
			// back and runs it again from the node's new place.
			return updateVersioned(ctx, tx, cur, "parent_id", "name", "path", "lineage", "updated_at", "version", "etag")
		})
	})
	if err != nil {
		return nil, nil, err
	}
	return moved, replaced, nil
}

// archiveTree archives a node and its live descendants with one timestamp,
// which Restore later uses to bring back exactly that set.
func archiveTree(ctx context.Context, tx bun.IDB, n *Node, at time.Time) error {
	if n.IsDir {
		lo, hi := descendantRange(n.Lineage)
		if _, err := tx.NewUpdate().Table("nodes").Set("archived_at = ?", at).
			Where("lineage > ?", lo).Where("lineage < ?", hi).Where("archived_at IS NULL").Exec(ctx); err != nil {
			return err
		}
	}
	_, err := tx.NewUpdate().Table("nodes").Set("archived_at = ?", at).Set("updated_at = ?", at).
		Where("id = ?", n.ID).Exec(ctx)
	return err
}

// Archive hides a node and everything below it from paths and listings
// without removing any bytes; Restore brings it back. It returns
// ErrNotFound (also for an already archived node) and ErrConflict for the
// root.
func (r *Repo) Archive(ctx context.Context, id string) (*Node, error) {
	if id == RootID {
		return nil, fmt.Errorf("%w: the root cannot be archived", ErrConflict)
	}
	var out *Node
	// Locked like a move, so a file written into the subtree meanwhile is
	// archived with it rather than left live under an archived folder.
	err := retryRaced(func() error {
		return r.InTx(ctx, func(ctx context.Context, tx bun.Tx) error {
			n, err := lockSubtree(ctx, tx, id)
			if err != nil {
				return err
			}
			if n.Archived() {
				return ErrNotFound
			}
			at := r.now()
			if err := archiveTree(ctx, tx, n, at); err != nil {
				return err
			}
			n.ArchivedAt = &at
			out = n
			return nil
		})
	})
	return out, err
}

// Restore brings back an archived node, and the descendants archived with
// it, at its old place. It returns ErrNotFound when the node is not
// archived or its parent is gone, ErrExists when a live node took its
// name meanwhile, and ErrQuota when the files it brings back would take
// an account that created them past its quota (archived files count
// against none, so that room may have been used since).
func (r *Repo) Restore(ctx context.Context, id string) (*Node, error) {
	var out *Node
	err := r.InTx(ctx, func(ctx context.Context, tx bun.Tx) error {
		n, err := nodeByID(ctx, tx, id)
		if err != nil {
			return err
		}
		if !n.Archived() {
			return fmt.Errorf("%w: not archived", ErrNotFound)
		}
		// Accounts first, then the folder, in the order writes take them.
		quotas, err := quotasOfRestored(ctx, tx, n)
		if err != nil {
			return err
		}
		if _, err := lockParent(ctx, tx, n.ParentID); err != nil {
			return err
		}
		at := *n.ArchivedAt
		now := r.now()
		if _, err := tx.NewUpdate().Table("nodes").Set("archived_at = NULL").Set("updated_at = ?", now).
			Where("id = ?", n.ID).Exec(ctx); err != nil {
			return err
		}
		if n.IsDir {
			lo, hi := descendantRange(n.Lineage)
			if _, err := tx.NewUpdate().Table("nodes").Set("archived_at = NULL").
				Where("lineage > ?", lo).Where("lineage < ?", hi).Where("archived_at = ?", at).Exec(ctx); err != nil {
				return err
			}
		}
		// Archived files count against no quota; back, they do again.
		for _, q := range quotas {
			used, err := quotaUsed(ctx, tx, q.Account)
			if err != nil {
				return err
			}
			if err := q.fits(used, 0); err != nil {
				return err
			}
		}
		n.ArchivedAt = nil
		n.UpdatedAt = now
		out = n
		return nil
	})
	return out, err
}

// quotasOfRestored returns the quotas of the accounts that created files
// a restore of n brings back, with their rows locked on PostgreSQL so the
// check after the restore holds until the commit.
func quotasOfRestored(ctx context.Context, tx bun.Tx, n *Node) ([]Quota, error) {
	q := tx.NewSelect().TableExpr("nodes AS n").Join("JOIN users AS u ON u.id = n.creator_id").
		ColumnExpr("DISTINCT u.id, u.quota_bytes").Where("u.quota_bytes > 0").Where("NOT n.is_dir")
	if n.IsDir {
		lo, hi := descendantRange(n.Lineage)
		q = q.Where("n.lineage > ? AND n.lineage < ? AND n.archived_at = ?", lo, hi, *n.ArchivedAt)
	} else {
		q = q.Where("n.id = ?", n.ID)
	}
	var rows []struct {
		ID         string `bun:"id"`
		QuotaBytes int64  `bun:"quota_bytes"`
	}
	if err := q.Scan(ctx, &rows); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	out := make([]Quota, 0, len(rows))
	for _, r := range rows {
		if err := lockAccount(ctx, tx, r.ID); err != nil {
			return nil, err
		}
		out = append(out, Quota{Account: r.ID, Bytes: r.QuotaBytes})
	}
	return out, nil
}

// Purge removes a node and its whole subtree, archived or not, for good. It
// returns the blob keys that the rows referred to, for the caller to delete
// once the transaction has committed (a crash in between leaves orphans for
// the sweep, never a row without its bytes). It returns ErrNotFound and
// ErrConflict for the root.
func (r *Repo) Purge(ctx context.Context, id string) ([]string, error) {
	if id == RootID {
		return nil, fmt.Errorf("%w: the root cannot be purged", ErrConflict)
	}
	var keys []string
	err := r.InTx(ctx, func(ctx context.Context, tx bun.Tx) error {
		n, err := nodeByID(ctx, tx, id)
		if err != nil {
			return err
		}
		nodes := []*Node{n}
		if n.IsDir {
			below, err := subtree(ctx, tx, n, false)
			if err != nil {
				return err
			}
			nodes = append(nodes, below...)
		}
		ids := make([]string, 0, len(nodes))
		for _, x := range nodes {
			ids = append(ids, x.ID)
			if x.BlobKey != "" {
				keys = append(keys, x.BlobKey)
			}
		}
		// Children first, so the parent_id foreign key never dangles.
		for i := len(ids) - 1; i >= 0; i-- {
			if _, err := tx.NewDelete().Table("nodes").Where("id = ?", ids[i]).Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// MetaPatch changes descriptive metadata; nil fields stay as they are.
type MetaPatch struct {
	Tags        *[]string
	Title       *string
	Description *string
	Source      *string
	PHI         *bool
	MimeType    *string
	ModTime     *time.Time
}

// UpdateMeta applies a patch to a live node. It returns ErrNotFound, and
// ErrInvalid for text that holds NUL or is not UTF-8.
func (r *Repo) UpdateMeta(ctx context.Context, id string, p MetaPatch) (*Node, error) {
	var texts []string
	for _, f := range []*string{p.Title, p.Description, p.Source, p.MimeType} {
		if f != nil {
			texts = append(texts, *f)
		}
	}
	if p.Tags != nil {
		texts = append(texts, *p.Tags...)
	}
	if err := checkText(texts...); err != nil {
		return nil, err
	}
	var out *Node
	err := r.InTx(ctx, func(ctx context.Context, tx bun.Tx) error {
		n, err := nodeByID(ctx, tx, id)
		if err != nil {
			return err
		}
		if n.Archived() {
			return ErrNotFound
		}
		// Only the fields the patch names are written, so two patches of
		// different fields at once both stay (each read the row before
		// the other wrote it).
		cols := []string{"updated_at"}
		if p.Tags != nil {
			n.Tags = cleanTags(*p.Tags)
			cols = append(cols, "tags")
		}
		if p.Title != nil {
			n.Title = *p.Title
			cols = append(cols, "title")
		}
		if p.Description != nil {
			n.Description = *p.Description
			cols = append(cols, "description")
		}
		if p.Source != nil {
			n.Source = *p.Source
			cols = append(cols, "source")
		}
		if p.PHI != nil {
			n.PHI = *p.PHI
			cols = append(cols, "phi")
		}
		if p.MimeType != nil {
			n.MimeType = *p.MimeType
			cols = append(cols, "mime_type")
		}
		if p.ModTime != nil {
			n.ModTime = p.ModTime.UTC().Truncate(time.Microsecond)
			cols = append(cols, "mod_time")
		}
		n.UpdatedAt = r.now()
		_, err = tx.NewUpdate().Model(n).ModelTableExpr("nodes").Column(cols...).
			Where("id = ?", n.ID).Exec(ctx)
		out = n
		return err
	})
	return out, err
}

// lockSubtree reads the node a move or archive is about to change and, on
// PostgreSQL, locks it and everything below it FOR UPDATE before the move
// computes new paths from it. A file write into the subtree (which reads
// its folder FOR KEY SHARE, see lockParent) then either finished before,
// and the move rewrites the new row's path with the rest, or waits and
// computes its path from the moved folder. A move of a folder above, or
// of one below, waits as well, so two moves never rewrite one subtree from
// different pictures of it. It returns ErrNotFound.
func lockSubtree(ctx context.Context, tx bun.Tx, id string) (*Node, error) {
	if !IsPostgres(tx) {
		return nodeByID(ctx, tx, id) // one writer: nothing moves under it
	}
	if !plainText(id) {
		return nil, ErrNotFound
	}
	cur := new(Node)
	// Locking the node first pins its lineage: a move above it must
	// update this row, and waits. Every move locks top-down (the node,
	// then its subtree in lineage order, parents before children), so two
	// moves of nested folders queue instead of each holding what the
	// other needs; a deadlock PostgreSQL still finds (a folder moved into
	// another's subtree while that one moves) is retried by the caller.
	if err := tx.NewSelect().Model(cur).Where("n.id = ?", id).For("UPDATE OF n").Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	if cur.IsDir {
		lo, hi := descendantRange(cur.Lineage)
		var ids []string
		if err := tx.NewSelect().Table("nodes").Column("id").Where("lineage > ?", lo).Where("lineage < ?", hi).
			Order("lineage").For("UPDATE").Scan(ctx, &ids); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, dbErr(err)
		}
	}
	return cur, nil
}
