// Package davfs is filegate's WebDAV door: a webdav.FileSystem, File and
// LockSystem over model.Store, dead properties in the database, and a
// Handler that speaks RFC 4918 itself for every method.
//
// The Handler does not use x/net/webdav's handler because that handler
// truncates a file before a PUT body has arrived, answers 501 to shared
// locks, forbids PROPPATCH of getlastmodified, and opens every file during
// PROPFIND. It still uses x/net/webdav's types, and FS, File and LockSystem
// satisfy x/net/webdav's interfaces so the stock handler can run over them.
//
// The package authenticates nobody: the gateway puts the request's Actor
// in the context (WithActor) and supplies a Decider, the one authorizer,
// which the Handler asks once per operation.
package davfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

	"github.com/uptrace/bun"
	"golang.org/x/net/webdav"

	"github.com/filegate/filegate/model"
)

// Actor is who a request acts as.
type Actor struct {
	// Subject is the authorizer's subject: "user:<name>", "token:<id>" or
	// "anonymous".
	Subject string
	// ID is recorded as creator of new nodes.
	ID string
	// Anonymous is true when the request presented no credentials, so a
	// refusal asks for them (401) instead of forbidding (403).
	Anonymous bool
	// Quota is the storage quota the actor's writes are checked against;
	// the zero value means none.
	Quota model.Quota
}

type actorKey struct{}

// WithActor returns ctx carrying the acting principal.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor WithActor stored, or an anonymous actor.
func ActorFrom(ctx context.Context) Actor {
	if a, ok := ctx.Value(actorKey{}).(Actor); ok {
		return a
	}
	return Actor{Subject: "anonymous", Anonymous: true}
}

// FS is a webdav.FileSystem over model.Store. Names are slash paths; each
// method canonicalises its name with model.CleanPath once. A removal
// archives (the files API can restore it) and releases the locks below the
// name; a rename changes only metadata.
type FS struct {
	store *model.Store
	repo  *model.Repo
	db    *bun.DB
	locks *LockSystem
	props *propStore
	hot   *hotLookup
	log   *slog.Logger
	// folding is set while a goroutine folds a folder's listing_changes
	// rows (see foldChanges).
	folding atomic.Bool
}

var _ webdav.FileSystem = (*FS)(nil)

// New returns a file system over store. locks may be nil, in which case a
// LockSystem on the store's database is made.
func New(store *model.Store, locks *LockSystem, log *slog.Logger) *FS {
	db := store.Repo.DB()
	if locks == nil {
		locks = NewLockSystem(db)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &FS{store: store, repo: store.Repo, db: db, locks: locks, props: &propStore{db: db}, hot: &hotLookup{db: db}, log: log}
}

// Locks returns the lock system the file system releases locks in.
func (f *FS) Locks() *LockSystem { return f.locks }

// pathError turns a model error into the *fs.PathError x/net/webdav
// inspects with os.IsNotExist and os.IsExist, which compare the wrapped
// error itself, so not-found and exists become fs.ErrNotExist and
// fs.ErrExist (errors.Is(err, fs.ErrNotExist) holds).
func pathError(op, name string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, model.ErrNotFound):
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	case errors.Is(err, model.ErrExists):
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrExist}
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}

// live returns the live node at a clean path.
func (f *FS) live(ctx context.Context, p string) (*model.Node, error) {
	return f.repo.LiveByPath(ctx, p)
}

// liveMany returns the live nodes at several clean paths in one query,
// keyed by path; missing paths are absent from the map.
func (f *FS) liveMany(ctx context.Context, paths ...string) (map[string]*model.Node, error) {
	nodes, _, err := f.lookup(ctx, paths, nil, false)
	return nodes, err
}

// nodeRow is a node with the number of locks that may bear on a request.
type nodeRow struct {
	model.Node `bun:",extend"`
	LockCount  int64 `bun:"lock_count,scanonly"`
}

// lookup is liveMany that, with countLocks, also reports whether no
// unexpired lock is rooted at a path, above one, or below one of below:
// the common case, in which a write needs no lock query of its own. The
// answer is known only when some node was found (noLocks is false
// otherwise).
func (f *FS) lookup(ctx context.Context, paths, below []string, countLocks bool) (map[string]*model.Node, bool, error) {
	var rows []nodeRow
	var err error
	hot := false
	if countLocks && len(below) == 0 {
		rows, hot, err = f.hot.run(ctx, f.locks.now().UnixMilli(), paths)
	}
	if !hot {
		rows, err = f.lookupQuery(ctx, paths, below, countLocks)
	}
	if err != nil {
		return nil, false, storeErr(err)
	}
	out := make(map[string]*model.Node, len(rows))
	noLocks := countLocks && len(rows) > 0
	for i := range rows {
		out[rows[i].Path] = &rows[i].Node
		if rows[i].LockCount > 0 {
			noLocks = false
		}
	}
	return out, noLocks, nil
}

// lookupQuery is lookup's query built by Bun.
func (f *FS) lookupQuery(ctx context.Context, paths, below []string, countLocks bool) ([]nodeRow, error) {
	var rows []nodeRow
	q := f.db.NewSelect().Model(&rows).ModelTableExpr("nodes AS n")
	if countLocks {
		sub := f.locks.relevant(f.db.NewSelect().Model((*lockRow)(nil)).ColumnExpr("COUNT(*)"), paths, below)
		q = q.ColumnExpr("n.*").ColumnExpr("(?) AS lock_count", sub)
	}
	err := q.Where("n.path IN (?)", bun.In(paths)).
		Where("n.archived_at IS NULL").Where("n.status = ?", model.StatusCompleted).
		Scan(ctx)
	return rows, err
}

// Stat describes the live node at name from its metadata alone.
func (f *FS) Stat(ctx context.Context, name string) (os.FileInfo, error) {
	p, err := model.CleanPath(name)
	if err != nil {
		return nil, pathError("stat", name, err)
	}
	n, err := f.live(ctx, p)
	if err != nil {
		return nil, pathError("stat", name, err)
	}
	return infoOf(n), nil
}

// Mkdir creates the folder name; its parent must exist. It returns errors
// satisfying os.IsExist and os.IsNotExist, and one wrapping
// model.ErrConflict when the parent is a file.
func (f *FS) Mkdir(ctx context.Context, name string, _ os.FileMode) error {
	p, err := model.CleanPath(name)
	if err != nil {
		return pathError("mkdir", name, err)
	}
	_, err = f.mkdir(ctx, p)
	return pathError("mkdir", name, err)
}

func (f *FS) mkdir(ctx context.Context, p string) (*model.Node, error) {
	if p == "/" {
		return nil, model.ErrExists
	}
	dir, base := model.SplitPath(p)
	parent, err := f.live(ctx, dir)
	if err != nil {
		return nil, err
	}
	return f.repo.CreateFolder(ctx, parent, base, ActorFrom(ctx).ID)
}

// RemoveAll archives the node at name and everything below it, and
// releases the locks on them. It returns an error satisfying os.IsNotExist.
func (f *FS) RemoveAll(ctx context.Context, name string) error {
	p, err := model.CleanPath(name)
	if err != nil {
		return pathError("remove", name, err)
	}
	n, err := f.live(ctx, p)
	if err != nil {
		return pathError("remove", name, err)
	}
	return pathError("remove", name, f.remove(ctx, n))
}

// remove archives n, the soft delete every door shares. The database
// drops the locks on and below its path (a trigger of migration
// 20261123000400), whichever door archives.
func (f *FS) remove(ctx context.Context, n *model.Node) error {
	_, err := f.repo.Archive(ctx, n.ID)
	return err
}

// Rename moves oldName to newName, overwriting (archiving) a node already
// there, changing only metadata. Locks below oldName are released, as RFC
// 4918 says a moved resource does not keep its locks.
func (f *FS) Rename(ctx context.Context, oldName, newName string) error {
	op, err := model.CleanPath(oldName)
	if err != nil {
		return pathError("rename", oldName, err)
	}
	np, err := model.CleanPath(newName)
	if err != nil {
		return pathError("rename", newName, err)
	}
	dir, base := model.SplitPath(np)
	if dir == "" {
		return pathError("rename", newName, model.ErrConflict)
	}
	nodes, err := f.liveMany(ctx, op, dir)
	if err != nil {
		return pathError("rename", oldName, err)
	}
	src, parent := nodes[op], nodes[dir]
	if src == nil || parent == nil {
		return pathError("rename", oldName, model.ErrNotFound)
	}
	_, _, err = f.move(ctx, src, parent, base, true)
	return pathError("rename", oldName, err)
}

// move renames src to parent/name and reports whether a destination was
// replaced. The database releases the locks of the source and of an
// overwritten destination (triggers of migration 20261123000400).
func (f *FS) move(ctx context.Context, src, parent *model.Node, name string, overwrite bool) (*model.Node, bool, error) {
	moved, replaced, err := f.repo.Move(ctx, src, parent, name, overwrite)
	if err != nil {
		return nil, false, err
	}
	return moved, replaced != nil, nil
}

// OpenFile opens name for reading (a file or a folder) or, with O_CREATE
// or a write flag, for writing a whole new content that is committed by
// Close only if every write succeeded. O_APPEND and writes at an offset
// are not supported (model.ErrInvalid): filegate's content is immutable.
func (f *FS) OpenFile(ctx context.Context, name string, flag int, _ os.FileMode) (webdav.File, error) {
	p, err := model.CleanPath(name)
	if err != nil {
		return nil, pathError("open", name, err)
	}
	n, err := f.live(ctx, p)
	if err != nil && !errors.Is(err, model.ErrNotFound) {
		return nil, pathError("open", name, err)
	}
	writing := flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC) != 0
	if !writing {
		if n == nil {
			return nil, pathError("open", name, model.ErrNotFound)
		}
		return &File{fs: f, ctx: ctx, node: n}, nil
	}
	switch {
	case flag&os.O_APPEND != 0:
		return nil, pathError("open", name, fmt.Errorf("%w: append is not supported", model.ErrInvalid))
	case n != nil && flag&os.O_EXCL != 0:
		return nil, pathError("open", name, model.ErrExists)
	case n != nil && n.IsDir:
		return nil, pathError("open", name, fmt.Errorf("%w: is a folder", model.ErrConflict))
	case n == nil && flag&os.O_CREATE == 0:
		return nil, pathError("open", name, model.ErrNotFound)
	}
	dir, base := model.SplitPath(p)
	if dir == "" {
		return nil, pathError("open", name, fmt.Errorf("%w: the root is a folder", model.ErrConflict))
	}
	parent, err := f.live(ctx, dir)
	if err != nil {
		return nil, pathError("open", name, err)
	}
	return newWriteFile(ctx, f, parent, base, n), nil
}

// hiddenFromListing reports whether a name is macOS Finder metadata
// (AppleDouble "._*" files and ".DS_Store"), which listings leave out for
// every client but Finder; see Handler.
func hiddenFromListing(name string) bool {
	return strings.HasPrefix(name, "._") || name == ".DS_Store"
}
