package model

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// liveCompleted restricts a query to the nodes that hold a name: not
// archived and not an upload in progress.
func liveCompleted(q *bun.SelectQuery) *bun.SelectQuery {
	return q.Where("n.archived_at IS NULL").Where("n.status = ?", StatusCompleted)
}

// NodeByID returns the node with that id, archived or in progress ones
// included. It returns ErrNotFound.
func (r *Repo) NodeByID(ctx context.Context, id string) (*Node, error) {
	return nodeByID(ctx, r.db, id)
}

func nodeByID(ctx context.Context, db bun.IDB, id string) (*Node, error) {
	if !plainText(id) {
		return nil, ErrNotFound // no id holds such bytes
	}
	n := new(Node)
	if err := db.NewSelect().Model(n).Where("n.id = ?", id).Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	return n, nil
}

// LiveByPath returns the live, completed node at a clean path, through the
// unique path index. It returns ErrNotFound.
func (r *Repo) LiveByPath(ctx context.Context, path string) (*Node, error) {
	if h := r.hot.statements(ctx); h != nil {
		n := new(Node)
		if err := h.queryOne(ctx, nil, h.liveByPath, n, path); err != nil {
			return nil, dbErr(err)
		}
		return n, nil
	}
	return liveByPath(ctx, r.db, path)
}

func liveByPath(ctx context.Context, db bun.IDB, path string) (*Node, error) {
	n := new(Node)
	q := db.NewSelect().Model(n).Where("n.path = ?", path)
	if err := liveCompleted(q).Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	return n, nil
}

// ListOptions pages through a folder's children in name order.
type ListOptions struct {
	// After returns only names sorting after it (a keyset cursor).
	After string
	// Limit caps the result; zero means no limit.
	Limit int
}

// Children lists a folder's live, completed children by name, with one
// query over the (parent_id, name) index. It returns ErrNotFound only if
// the query fails that way; an empty folder gives an empty slice.
func (r *Repo) Children(ctx context.Context, parentID string, o ListOptions) ([]*Node, error) {
	var nodes []*Node
	q := r.db.NewSelect().Model(&nodes).Where("n.parent_id = ?", parentID)
	q = liveCompleted(q).Order("n.name")
	if o.After != "" {
		q = q.Where("n.name > ?", o.After)
	}
	if o.Limit > 0 {
		q = q.Limit(int64(o.Limit))
	}
	if err := q.Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	return nodes, nil
}

// Subtree returns the live, completed descendants of a folder (not the
// folder itself), parents before children.
func (r *Repo) Subtree(ctx context.Context, folder *Node) ([]*Node, error) {
	return subtree(ctx, r.db, folder, true)
}

func subtree(ctx context.Context, db bun.IDB, folder *Node, liveOnly bool) ([]*Node, error) {
	var nodes []*Node
	lo, hi := descendantRange(folder.Lineage)
	q := db.NewSelect().Model(&nodes).
		Where("n.lineage > ?", lo).Where("n.lineage < ?", hi).Order("n.path")
	if liveOnly {
		q = liveCompleted(q)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	return nodes, nil
}

// descendantRange gives the open lineage range holding exactly the
// descendants of lineage: everything after "lineage/" and before
// "lineage0" ('0' follows '/'), which an index answers without LIKE.
func descendantRange(lineage string) (string, string) {
	return lineage + "/", lineage + "0"
}

// CreateFolder makes a folder named name in parent. It returns ErrExists
// when a live sibling has the name, ErrConflict when parent is a file, and
// ErrInvalid for a bad name.
func (r *Repo) CreateFolder(ctx context.Context, parent *Node, name, creator string) (*Node, error) {
	name, err := CleanName(name)
	if err != nil {
		return nil, err
	}
	if !parent.IsDir {
		return nil, fmt.Errorf("%w: parent is not a folder", ErrConflict)
	}
	now := r.now()
	id := NewID()
	n := &Node{
		ID: id, ParentID: parent.ID, Name: name, Path: JoinPath(parent.Path, name),
		Lineage: parent.Lineage + "/" + id, IsDir: true, CreatorID: creator, OwnerID: creator,
		Tags: []string{}, Status: StatusCompleted, Version: 1, ETag: folderETag(id, 1),
		CreatedAt: now, UpdatedAt: now, ModTime: now,
	}
	err = r.writeTx(ctx, func(ctx context.Context, tx bun.Tx) error {
		p, err := lockParent(ctx, tx, parent.ID)
		if err != nil {
			return err
		}
		n.Path, n.Lineage = JoinPath(p.Path, name), p.Lineage+"/"+id
		_, err = tx.NewInsert().Model(n).Exec(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	r.stats.grew(1)
	return n, nil
}

// lockParent re-reads a folder that is about to gain a child or a new
// member, inside the transaction that adds it, and returns it: the
// child's path and lineage come from this row, never from one read
// before. On PostgreSQL the row is read FOR KEY SHARE: a move of the
// folder or of a folder above it (which locks its subtree FOR UPDATE, see
// lockSubtree) waits for this transaction, and one already under way
// makes this read wait and then see the folder where the move put it.
// SQLite has one writer, whose transaction sees every commit. It returns
// ErrNotFound for a missing or archived folder and ErrConflict for a file.
func lockParent(ctx context.Context, tx bun.IDB, id string) (*Node, error) {
	if !plainText(id) {
		return nil, ErrNotFound
	}
	p := new(Node)
	q := tx.NewSelect().Model(p).Where("n.id = ?", id)
	if IsPostgres(tx) {
		q = q.For("KEY SHARE OF n")
	}
	if err := q.Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	if p.Archived() || p.Status != StatusCompleted {
		return nil, ErrNotFound
	}
	if !p.IsDir {
		return nil, fmt.Errorf("%w: parent is not a folder", ErrConflict)
	}
	return p, nil
}

// parentLock is the locking clause lockParent's read takes, for a
// statement that reads the parent row under alias; empty on SQLite.
func parentLock(db bun.IDB, alias string) string {
	if IsPostgres(db) {
		return "FOR KEY SHARE OF " + alias
	}
	return ""
}

// folderAndLive checks, in one round trip, that folderID is a live folder
// and returns the live completed node at path (nil when there is none):
// the two questions every file write asks. It returns ErrNotFound for a
// missing or archived folder and ErrConflict when it is not a folder.
func (r *Repo) folderAndLive(ctx context.Context, tx bun.Tx, folderID, path string) (*Node, error) {
	var rows []*Node
	var err error
	if h := r.hot.statements(ctx); h != nil {
		err = h.query(ctx, &tx, h.folderAndLive, &rows, folderID, path)
	} else {
		err = tx.NewSelect().Model(&rows).
			WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
				return q.Where("n.id = ?", folderID).
					WhereGroup(" OR ", func(q *bun.SelectQuery) *bun.SelectQuery {
						return liveCompleted(q.Where("n.path = ?", path))
					})
			}).Scan(ctx)
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, dbErr(err)
	}
	var folder, existing *Node
	for _, n := range rows {
		if n.ID == folderID {
			folder = n
		} else {
			existing = n
		}
	}
	switch {
	case folder == nil || folder.Archived() || folder.Status != StatusCompleted:
		return nil, ErrNotFound
	case !folder.IsDir:
		return nil, fmt.Errorf("%w: parent is not a folder", ErrConflict)
	}
	return existing, nil
}

func folderETag(id string, version int64) string {
	return `"d` + id[:min(len(id), 16)] + "-" + strconv.FormatInt(version, 10) + `"`
}

// Content is a committed blob as the repository records it.
type Content struct {
	BlobKey string
	Size    int64
	SHA256  string
}

// Cond holds the preconditions of a write, checked inside its transaction.
type Cond struct {
	// IfMatch, when set, must equal the current ETag ("*" means the file
	// must exist).
	IfMatch string
	// IfNoneMatch "*" means the file must not exist yet.
	IfNoneMatch string
	// NoOverwrite refuses to replace an existing file (ErrExists).
	NoOverwrite bool
	// Quota, when its Bytes is positive, bounds the live files its Account
	// created: a write that would take them past Bytes fails with
	// ErrQuota. A file's bytes count against the account that created it,
	// so growing a file someone else created is checked against that
	// account's quota instead (whatever Bytes says). Writes of one account
	// are checked one at a time, so concurrent writes cannot pass a quota
	// together. Account should name the actor even without a quota, or a
	// replacement of the actor's own file looks like someone else's.
	Quota Quota
}

// Quota is an account's storage quota as the caller knows it.
type Quota struct {
	// Account is the user id whose live files are counted.
	Account string
	// Bytes is the quota; zero means none.
	Bytes int64
}

// charge checks that growing the live files of q.Account by more bytes
// keeps them within q.Bytes. It locks the account's row first, so that
// the sum it reads cannot change under it before the transaction ends.
func (q Quota) charge(ctx context.Context, tx bun.Tx, more int64) error {
	if q.Bytes <= 0 || q.Account == "" || more <= 0 {
		return nil
	}
	if err := lockAccount(ctx, tx, q.Account); err != nil {
		return err
	}
	used, err := quotaUsed(ctx, tx, q.Account)
	if err != nil {
		return err
	}
	return q.fits(used, more)
}

// lockAccount locks a user's row until the transaction ends, so that the
// quota checks of one account's writes run one after the other. SQLite
// has one writer, which already serialises them.
func lockAccount(ctx context.Context, tx bun.Tx, id string) error {
	if !IsPostgres(tx) {
		return nil
	}
	var got string
	err := tx.NewRaw("SELECT id FROM users WHERE id = ? FOR UPDATE", id).Scan(ctx, &got)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	return err
}

// fits returns ErrQuota when used and more bytes together pass q.
func (q Quota) fits(used, more int64) error {
	if used+more > q.Bytes {
		return fmt.Errorf("%w: %d of %d bytes used, %d more asked", ErrQuota, used, q.Bytes, more)
	}
	return nil
}

// chargeWrite checks a write of size bytes over existing (nil for a new
// file, which q.Account creates) against the quota of the account whose
// usage it grows: q for the actor's own files, or, for a file someone
// else created, that account's quota as the database holds it.
func chargeWrite(ctx context.Context, tx bun.Tx, q Quota, existing *Node, size int64) error {
	if existing != nil && existing.CreatorID != q.Account {
		if size <= existing.Size {
			return nil
		}
		var bytes int64
		err := tx.NewRaw("SELECT quota_bytes FROM users WHERE id = ?", existing.CreatorID).Scan(ctx, &bytes)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // a token's file, or an account since removed
		}
		if err != nil {
			return err
		}
		q = Quota{Account: existing.CreatorID, Bytes: bytes}
	}
	return q.charge(ctx, tx, q.chargeFor(existing, size))
}

// chargeFor is what writing size bytes over existing (nil for a new file
// created by q.Account) adds to q.Account's usage.
func (q Quota) chargeFor(existing *Node, size int64) int64 {
	if existing == nil {
		return size
	}
	if existing.CreatorID != q.Account {
		return 0
	}
	return size - existing.Size
}

func (c Cond) check(existing *Node) error {
	switch {
	case c.IfMatch == "*" && existing == nil:
		return ErrPrecondition
	case c.IfMatch != "" && c.IfMatch != "*" && (existing == nil || existing.ETag != c.IfMatch):
		return ErrPrecondition
	case c.IfNoneMatch == "*" && existing != nil:
		return ErrPrecondition
	case c.NoOverwrite && existing != nil:
		return ErrExists
	}
	return nil
}

// PutFile records new content for the file named name in parent: it
// creates the file, or replaces the content of the live file there, which
// keeps its id, grants and tokens. It returns the node, whether it was
// created, and the blob key the replaced content had (for the caller to
// delete after the commit). It returns ErrConflict when the name is a
// folder or the parent is not one, ErrPrecondition or ErrExists when cond
// fails, and ErrInvalid for a bad name.
func (r *Repo) PutFile(ctx context.Context, parent *Node, name string, c Content, meta FileMeta, actor string, cond Cond) (n *Node, created bool, oldBlob string, err error) {
	if name, err = CleanName(name); err != nil {
		return nil, false, "", err
	}
	if err := checkText(append([]string{meta.MimeType, meta.Title, meta.Description, meta.Source}, meta.Tags...)...); err != nil {
		return nil, false, "", err
	}
	now := r.now()
	mod := meta.ModTime.UTC().Truncate(time.Microsecond)
	if meta.ModTime.IsZero() {
		mod = now
	}
	if cond.check(nil) == nil && cond.Quota.Bytes <= 0 {
		// Most writes create a new file: try that in one statement
		// before paying for a transaction (a quota needs one).
		n, err = r.createFile(ctx, parent, name, c, meta, actor, now, mod)
		if err != nil || n != nil {
			return n, n != nil, "", err
		}
	}
	err = retryRaced(func() error {
		return r.writeTx(ctx, func(ctx context.Context, tx bun.Tx) (err error) {
			n, created, oldBlob, err = r.replaceOrInsert(ctx, tx, parent, name, c, meta, actor, cond, now, mod)
			return err
		})
	})
	if err != nil {
		return nil, false, "", err
	}
	if created {
		r.stats.grew(1)
	}
	return n, created, oldBlob, nil
}

// replaceOrInsert is PutFile's transaction: it gives the live file named
// name in parent new content, or inserts it. It returns errRaced when
// another writer changed the file between its read and its update.
func (r *Repo) replaceOrInsert(ctx context.Context, tx bun.Tx, parent *Node, name string, c Content, meta FileMeta, actor string, cond Cond, now, mod time.Time) (n *Node, created bool, oldBlob string, err error) {
	existing, err := r.folderAndLive(ctx, tx, parent.ID, JoinPath(parent.Path, name))
	if err != nil {
		return nil, false, "", err
	}
	if err := cond.check(existing); err != nil {
		return nil, false, "", err
	}
	if existing == nil || !existing.IsDir {
		if err := chargeWrite(ctx, tx, cond.Quota, existing, c.Size); err != nil {
			return nil, false, "", err
		}
	}
	if existing == nil {
		p, err := lockParent(ctx, tx, parent.ID)
		if err != nil {
			return nil, false, "", err
		}
		n = newFile(p, name, c, meta, actor, now, mod)
		_, err = tx.NewInsert().Model(n).Exec(ctx)
		return n, true, "", err
	}
	if existing.IsDir {
		return nil, false, "", fmt.Errorf("%w: a folder has that name", ErrConflict)
	}
	oldBlob = existing.BlobKey
	existing.BlobKey, existing.Size, existing.SHA256 = c.BlobKey, c.Size, c.SHA256
	existing.ETag = fileETag(c.SHA256)
	existing.Version++
	existing.UpdatedAt, existing.ModTime = now, mod
	if meta.MimeType != "" {
		existing.MimeType = meta.MimeType
	}
	err = updateVersioned(ctx, tx, existing, "blob_key", "size", "sha256", "etag", "version", "updated_at", "mod_time", "mime_type")
	return existing, false, oldBlob, err
}

// errRaced marks a transaction that lost a race for a row: another writer
// changed it between this transaction's read and its update (possible on
// PostgreSQL, whose transactions here read committed rows without locking
// them; SQLite has one writer). The caller runs the transaction again, so
// its preconditions are checked against the winner's row: two PUTs with
// the same If-Match cannot both succeed, and no version is counted twice.
var errRaced = errors.New("model: the row changed under the transaction")

// maxRaceRetries bounds how often a write retries after losing a race.
const maxRaceRetries = 10

// updateVersioned writes cols of n, whose Version the caller has just
// raised by one, only if the row still has the version it was read at. It
// returns errRaced when it does not.
func updateVersioned(ctx context.Context, tx bun.Tx, n *Node, cols ...string) error {
	res, err := tx.NewUpdate().Model(n).ModelTableExpr("nodes").Column(cols...).
		Where("id = ?", n.ID).Where("version = ?", n.Version-1).Exec(ctx)
	if err != nil {
		return err
	}
	if k, err := res.RowsAffected(); err != nil {
		return err
	} else if k == 0 {
		return errRaced
	}
	return nil
}

// retryRaced runs write again while it loses races (errRaced, or a
// PostgreSQL deadlock between two writers' row locks), a bounded number of
// times. It returns write's last error, or ErrConflict when every attempt
// lost.
func retryRaced(write func() error) error {
	for range maxRaceRetries {
		if err := write(); !errors.Is(err, errRaced) && !isLockConflict(err) {
			return err
		}
	}
	return fmt.Errorf("%w: the file kept changing under the write", ErrConflict)
}

// createFile inserts the file named name into parent in one statement
// when parent is a live folder with no live child of that name, and
// returns nil, nil when it is not: the caller then takes the transaction
// that tells those cases apart. Any unique index may be the one a
// concurrent writer of the same name hits first (the sibling name or the
// path), so the statement yields on a conflict in any of them; the
// transaction then finds that writer's file and replaces its content. The
// path and lineage come from the folder's row as the statement sees it, so
// a folder moved since the caller read it still gets a child with the
// right path. On PostgreSQL the statement is its own transaction, which
// saves three round trips; on SQLite it joins the group commit.
func (r *Repo) createFile(ctx context.Context, parent *Node, name string, c Content, meta FileMeta, actor string, now, mod time.Time) (*Node, error) {
	n := newFile(parent, name, c, meta, actor, now, mod)
	tagsJSON, err := json.Marshal(n.Tags)
	if err != nil {
		return nil, err
	}
	var placed []placement
	insert := func(ctx context.Context, db bun.IDB) error {
		err := db.NewRaw(`INSERT INTO nodes (`+newFileColumns+`)
	SELECT ?, p.id, ?, CASE WHEN p.path = '/' THEN '/' || ? ELSE p.path || '/' || ? END, p.lineage || '/' || ?,
		FALSE, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?
	FROM nodes AS p
	WHERE p.id = ? AND p.is_dir AND p.archived_at IS NULL AND p.status = ?
	`+parentLock(db, "p")+`
	ON CONFLICT DO NOTHING
	RETURNING path, lineage`,
			n.ID, name, name, name, n.ID,
			n.Size, n.MimeType, n.SHA256, n.ETag, n.BlobKey, n.CreatorID, n.OwnerID, string(tagsJSON),
			n.Title, n.Description, n.Source, n.PHI, n.Status, n.CreatedAt, n.UpdatedAt, n.ModTime,
			parent.ID, StatusCompleted).Scan(ctx, &placed)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // a conflict or no such folder: placed stays empty
		}
		return err
	}
	if h := r.hot.statements(ctx); h != nil && h.createFile != nil {
		if r.group == nil {
			err = h.createFileRow(ctx, nil, n, string(tagsJSON), parent.ID, &placed)
		} else {
			err = r.writeTx(ctx, func(ctx context.Context, tx bun.Tx) error {
				return h.createFileRow(ctx, &tx, n, string(tagsJSON), parent.ID, &placed)
			})
		}
	} else if r.group == nil {
		err = insert(ctx, r.db)
	} else {
		err = r.writeTx(ctx, func(ctx context.Context, tx bun.Tx) error { return insert(ctx, tx) })
	}
	if err != nil {
		return nil, dbErr(err)
	}
	if len(placed) != 1 {
		return nil, nil
	}
	n.Path, n.Lineage = placed[0].Path, placed[0].Lineage
	r.stats.grew(1)
	return n, nil
}

// newFileColumns are the columns createFile's statement fills, in the
// order of its values; its prepared twin (hotStatements) fills the same.
const newFileColumns = "id, parent_id, name, path, lineage, is_dir, size, mime_type, sha256, " +
	"etag, blob_key, creator_id, owner_id, tags, title, description, source, phi, status, version, " +
	"created_at, updated_at, mod_time"

// placement is where createFile's statement put a new file.
type placement struct {
	Path    string `bun:"path"`
	Lineage string `bun:"lineage"`
}

// newFile is the row of a new file named name in parent, its path and
// lineage following from parent's.
func newFile(parent *Node, name string, c Content, meta FileMeta, actor string, now, mod time.Time) *Node {
	id := NewID()
	return &Node{
		ID: id, ParentID: parent.ID, Name: name, Path: JoinPath(parent.Path, name),
		Lineage: parent.Lineage + "/" + id, Size: c.Size, MimeType: meta.MimeType, SHA256: c.SHA256,
		ETag: fileETag(c.SHA256), BlobKey: c.BlobKey, CreatorID: actor, OwnerID: actor,
		Tags: cleanTags(meta.Tags), Title: meta.Title, Description: meta.Description, Source: meta.Source,
		PHI: meta.PHI, Status: StatusCompleted, Version: 1, CreatedAt: now, UpdatedAt: now, ModTime: mod,
	}
}

// ReplaceContent gives an existing file new content, checking cond against
// its current ETag. It returns the old blob key, ErrNotFound, ErrConflict
// for a folder, and ErrPrecondition.
func (r *Repo) ReplaceContent(ctx context.Context, id string, c Content, mimeType string, cond Cond) (n *Node, oldBlob string, err error) {
	now := r.now()
	err = retryRaced(func() error {
		return r.writeTx(ctx, func(ctx context.Context, tx bun.Tx) error {
			cur, err := nodeByID(ctx, tx, id)
			if err != nil {
				return err
			}
			if cur.Archived() || cur.Status != StatusCompleted {
				return ErrNotFound
			}
			if cur.IsDir {
				return fmt.Errorf("%w: a folder has no content", ErrConflict)
			}
			if err := cond.check(cur); err != nil {
				return err
			}
			if err := chargeWrite(ctx, tx, cond.Quota, cur, c.Size); err != nil {
				return err
			}
			oldBlob = cur.BlobKey
			cur.BlobKey, cur.Size, cur.SHA256, cur.ETag = c.BlobKey, c.Size, c.SHA256, fileETag(c.SHA256)
			cur.Version++
			cur.UpdatedAt, cur.ModTime = now, now
			if mimeType != "" {
				cur.MimeType = mimeType
			}
			n = cur
			return updateVersioned(ctx, tx, cur, "blob_key", "size", "sha256", "etag", "version", "updated_at", "mod_time", "mime_type")
		})
	})
	return n, oldBlob, err
}

func cleanTags(tags []string) []string {
	out := make([]string, 0, len(tags))
	seen := map[string]bool{}
	for _, t := range tags {
		t = strings.TrimSpace(t)
		if t != "" && !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// blobKeyOf returns the blob key the row id names now, any status, so a
// reader that found a blob missing can tell a change that came after it
// from damage. It returns ErrNotFound when the row is gone (purged).
func (r *Repo) blobKeyOf(ctx context.Context, id string) (string, error) {
	var key string
	err := r.db.NewSelect().Table("nodes").Column("blob_key").Where("id = ?", id).Scan(ctx, &key)
	return key, dbErr(err)
}
