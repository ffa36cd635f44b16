package davfs

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"golang.org/x/net/webdav"

	"github.com/filegate/filegate/model"
)

// MaxLockTimeout caps every lock's timeout, "Infinite" included, so a
// client that vanishes cannot hold a name for longer.
const MaxLockTimeout = time.Hour

// tokenPrefix starts every lock token; probePrefix marks the conflict
// probes x/net/webdav's handler takes around each write, which are never
// stored.
const (
	tokenPrefix = "opaquelocktoken:"
	probePrefix = "filegate-probe:"
)

// Lock is a WebDAV write lock on a name.
type Lock struct {
	// Token is the lock token, "opaquelocktoken:<uuid>".
	Token string
	// Root is the clean path the lock was taken on.
	Root string
	// Infinite is true for a depth-infinity lock, which covers everything
	// below Root; otherwise it covers Root and its membership only.
	Infinite bool
	// Shared is true for a shared lock; false for an exclusive one.
	Shared bool
	// OwnerXML is the self-contained content of the DAV:owner element.
	OwnerXML string
	// Subject is the authorizer subject that took the lock; only it may
	// use, refresh or release the token.
	Subject string
	// Timeout is the duration asked for (after capping); Expires follows
	// from it at creation and at every refresh.
	Timeout time.Duration
	Expires time.Time
}

// covers reports whether the lock applies to the resource at p.
func (l *Lock) covers(p string) bool {
	return l.Root == p || (l.Infinite && model.IsWithin(p, l.Root))
}

// lockRow is a row of dav_locks.
type lockRow struct {
	bun.BaseModel `bun:"table:dav_locks"`

	Token     string    `bun:"token,pk"`
	Root      string    `bun:"root"`
	Infinite  bool      `bun:"infinite"`
	Shared    bool      `bun:"shared"`
	OwnerXML  string    `bun:"owner_xml"`
	Subject   string    `bun:"subject"`
	TimeoutS  int64     `bun:"timeout_s"`
	CreatedAt time.Time `bun:"created_at"`
	ExpiresMS int64     `bun:"expires_ms"`
}

func (r *lockRow) lock() Lock {
	return Lock{Token: r.Token, Root: r.Root, Infinite: r.Infinite, Shared: r.Shared, OwnerXML: r.OwnerXML,
		Subject: r.Subject, Timeout: time.Duration(r.TimeoutS) * time.Second, Expires: time.UnixMilli(r.ExpiresMS)}
}

// LockSystem keeps WebDAV locks in the database, so every instance sharing
// it honours every lock. It supports exclusive and shared write locks of
// depth 0 and infinity, refresh, and timeouts capped at MaxLockTimeout.
// It also implements webdav.LockSystem for x/net/webdav's handler.
type LockSystem struct {
	db  *bun.DB
	now func() time.Time
}

var _ webdav.LockSystem = (*LockSystem)(nil)

// NewLockSystem returns a lock system on a migrated database.
func NewLockSystem(db *bun.DB) *LockSystem {
	return &LockSystem{db: db, now: time.Now}
}

// capTimeout turns a requested timeout (zero or negative for "Infinite")
// into the one granted.
func capTimeout(d time.Duration) time.Duration {
	if d <= 0 || d > MaxLockTimeout {
		return MaxLockTimeout
	}
	return d.Truncate(time.Second)
}

func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return tokenPrefix + h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// ancestors returns p and every folder above it, root first.
func ancestors(p string) []string {
	out := []string{"/"}
	for i := 1; i < len(p); i++ {
		if p[i] == '/' {
			out = append(out, p[:i])
		}
	}
	if p != "/" {
		out = append(out, p)
	}
	return out
}

// lockRoots lists, once each, the paths a lock bearing on any of paths
// may be rooted at: the paths themselves and their ancestors.
func lockRoots(paths []string) []string {
	seen := map[string]bool{}
	var roots []string
	for _, p := range paths {
		for _, a := range ancestors(p) {
			if !seen[a] {
				seen[a] = true
				roots = append(roots, a)
			}
		}
	}
	return roots
}

// relevant restricts q (over dav_locks) to the unexpired locks rooted at
// any of paths or an ancestor of one, plus, for each path in below, those
// rooted strictly below it.
func (ls *LockSystem) relevant(q *bun.SelectQuery, paths, below []string) *bun.SelectQuery {
	roots := lockRoots(paths)
	q = q.Where("expires_ms > ?", ls.now().UnixMilli())
	return q.WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
		if len(roots) > 0 {
			q = q.WhereOr("root IN (?)", bun.In(roots))
		}
		for _, b := range below {
			lo, hi := b+"/", b+"0"
			if b == "/" {
				lo, hi = "/", "0"
			}
			q = q.WhereOr("(root > ? AND root < ?)", lo, hi)
		}
		return q
	})
}

// query returns the locks relevant picks.
func (ls *LockSystem) query(ctx context.Context, db bun.IDB, paths, below []string) ([]Lock, error) {
	var rows []lockRow
	if err := ls.relevant(db.NewSelect().Model(&rows), paths, below).Scan(ctx); err != nil {
		return nil, storeErr(err)
	}
	out := make([]Lock, len(rows))
	for i := range rows {
		out[i] = rows[i].lock()
	}
	return out, nil
}

// Protects reports, in one query, whether an unexpired lock stops a
// writer holding no token from changing the resources at the clean paths
// own (a lock on one of them, or a depth-infinity lock on a folder above
// it; with subtree, also a lock on anything below it, for writes that
// remove or move a resource with its subtree) or the membership of the
// folders in members (a lock on the folder itself, of any depth, or a
// depth-infinity lock above it). It returns the database's errors.
func (ls *LockSystem) Protects(ctx context.Context, own []string, subtree bool, members []string) (bool, error) {
	var below []string
	if subtree {
		below = own
	}
	locks, err := ls.query(ctx, ls.db, append(append([]string(nil), own...), members...), below)
	if err != nil {
		return false, err
	}
	for _, l := range locks {
		for _, p := range own {
			if l.covers(p) || subtree && model.IsWithin(l.Root, p) {
				return true, nil
			}
		}
		for _, m := range members {
			if l.covers(m) {
				return true, nil
			}
		}
	}
	return false, nil
}

// Covering returns the unexpired locks that apply to the resource at the
// clean path p: locks on p itself and depth-infinity locks on a folder
// above it.
func (ls *LockSystem) Covering(ctx context.Context, p string) ([]Lock, error) {
	all, err := ls.query(ctx, ls.db, []string{p}, nil)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, l := range all {
		if l.covers(p) {
			out = append(out, l)
		}
	}
	return out, nil
}

// Within returns the unexpired locks that apply to p or to anything below
// it, and the locks on the folders above it (any depth, for the checks on
// membership changes), in one query.
func (ls *LockSystem) Within(ctx context.Context, p string) ([]Lock, error) {
	return ls.query(ctx, ls.db, []string{p}, []string{p})
}

// Around returns every unexpired lock relevant to the clean paths given:
// those on each path and its ancestors, and for the paths in below those
// rooted under them too. Callers filter with Lock's coverage rules.
func (ls *LockSystem) Around(ctx context.Context, paths, below []string) ([]Lock, error) {
	return ls.query(ctx, ls.db, paths, below)
}

// Acquire takes a new lock on l.Root, with a fresh token and its timeout
// capped. It returns webdav.ErrLocked when an existing lock conflicts: an
// exclusive lock conflicts with any other lock it overlaps, a shared lock
// only with exclusive ones.
func (ls *LockSystem) Acquire(ctx context.Context, l Lock) (Lock, error) {
	l.Token = newToken()
	l.Timeout = capTimeout(l.Timeout)
	now := ls.now()
	l.Expires = now.Add(l.Timeout)
	err := ls.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if model.IsPostgres(tx) {
			// Serialise lock creation across instances: the conflict check
			// and the insert must not interleave with another's.
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", int64(0x6461766c6f636b)); err != nil {
				return err
			}
		}
		if _, err := tx.NewDelete().Model((*lockRow)(nil)).Where("expires_ms <= ?", now.UnixMilli()).Exec(ctx); err != nil {
			return err
		}
		var below []string
		if l.Infinite {
			below = []string{l.Root}
		}
		existing, err := ls.query(ctx, tx, []string{l.Root}, below)
		if err != nil {
			return err
		}
		for _, x := range existing {
			overlap := x.covers(l.Root) || (l.Infinite && model.IsWithin(x.Root, l.Root))
			if overlap && (!x.Shared || !l.Shared) {
				return webdav.ErrLocked
			}
		}
		row := &lockRow{Token: l.Token, Root: l.Root, Infinite: l.Infinite, Shared: l.Shared, OwnerXML: l.OwnerXML,
			Subject: l.Subject, TimeoutS: int64(l.Timeout / time.Second), CreatedAt: now.UTC(), ExpiresMS: l.Expires.UnixMilli()}
		_, err = tx.NewInsert().Model(row).Exec(ctx)
		return err
	})
	if err != nil {
		if errors.Is(err, webdav.ErrLocked) {
			return Lock{}, err
		}
		return Lock{}, storeErr(err)
	}
	return l, nil
}

// Get returns the unexpired lock with that token. It returns
// webdav.ErrNoSuchLock.
func (ls *LockSystem) Get(ctx context.Context, token string) (Lock, error) {
	var row lockRow
	err := ls.db.NewSelect().Model(&row).Where("token = ?", token).Where("expires_ms > ?", ls.now().UnixMilli()).Scan(ctx)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Lock{}, webdav.ErrNoSuchLock
		}
		return Lock{}, storeErr(err)
	}
	return row.lock(), nil
}

// Renew extends the lock token by a new (capped) timeout. It returns
// webdav.ErrNoSuchLock.
func (ls *LockSystem) Renew(ctx context.Context, token string, timeout time.Duration) (Lock, error) {
	l, err := ls.Get(ctx, token)
	if err != nil {
		return Lock{}, err
	}
	l.Timeout = capTimeout(timeout)
	l.Expires = ls.now().Add(l.Timeout)
	res, err := ls.db.NewUpdate().Model((*lockRow)(nil)).
		Set("timeout_s = ?", int64(l.Timeout/time.Second)).Set("expires_ms = ?", l.Expires.UnixMilli()).
		Where("token = ?", token).Exec(ctx)
	if err != nil {
		return Lock{}, storeErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Lock{}, webdav.ErrNoSuchLock
	}
	return l, nil
}

// Release removes the lock token. It returns webdav.ErrNoSuchLock.
func (ls *LockSystem) Release(ctx context.Context, token string) error {
	res, err := ls.db.NewDelete().Model((*lockRow)(nil)).Where("token = ?", token).Exec(ctx)
	if err != nil {
		return storeErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return webdav.ErrNoSuchLock
	}
	return nil
}

// ReleaseWithin removes every lock rooted at p or below it. Moves,
// archives and purges of nodes do this in the database already (triggers
// of migration 20261123000400); it is for tools that clean up by path.
func (ls *LockSystem) ReleaseWithin(ctx context.Context, p string) error {
	q := ls.db.NewDelete().Model((*lockRow)(nil))
	if p == "/" {
		q = q.Where("1 = 1")
	} else {
		q = q.Where("root = ? OR (root > ? AND root < ?)", p, p+"/", p+"0")
	}
	_, err := q.Exec(ctx)
	return storeErr(err)
}

// The webdav.LockSystem methods below carry no context; they run with a
// bounded background one.
const lockOpTimeout = 10 * time.Second

// Confirm reports whether a request may act on name0 and name1 given the
// lock tokens among conditions: every lock covering either name must have
// its token among them. The release function does nothing, because the
// database, not process memory, holds the state.
func (ls *LockSystem) Confirm(_ time.Time, name0, name1 string, conditions ...webdav.Condition) (func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), lockOpTimeout)
	defer cancel()
	for _, name := range []string{name0, name1} {
		if name == "" {
			continue
		}
		p, err := model.CleanPath(name)
		if err != nil {
			return nil, webdav.ErrConfirmationFailed
		}
		locks, err := ls.Covering(ctx, p)
		if err != nil {
			return nil, err
		}
		for _, l := range locks {
			if !hasToken(conditions, l.Token) {
				return nil, webdav.ErrConfirmationFailed
			}
		}
	}
	return func() {}, nil
}

func hasToken(conds []webdav.Condition, token string) bool {
	for _, c := range conds {
		if !c.Not && c.Token == token {
			return true
		}
	}
	return false
}

// Create takes a lock as webdav.LockSystem asks. x/net/webdav's handler
// brackets every unconditional write with a zero-depth, infinite, ownerless
// lock that it releases at once; those are answered by a conflict check
// alone and never stored.
func (ls *LockSystem) Create(_ time.Time, d webdav.LockDetails) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lockOpTimeout)
	defer cancel()
	p, err := model.CleanPath(d.Root)
	if err != nil {
		return "", err
	}
	if d.Duration < 0 && d.ZeroDepth && d.OwnerXML == "" {
		locks, err := ls.Covering(ctx, p)
		if err != nil {
			return "", err
		}
		if len(locks) > 0 {
			return "", webdav.ErrLocked
		}
		return probePrefix + strings.TrimPrefix(newToken(), tokenPrefix), nil
	}
	l, err := ls.Acquire(ctx, Lock{Root: p, Infinite: !d.ZeroDepth, OwnerXML: d.OwnerXML, Timeout: d.Duration})
	return l.Token, err
}

// Refresh extends a lock as webdav.LockSystem asks.
func (ls *LockSystem) Refresh(_ time.Time, token string, duration time.Duration) (webdav.LockDetails, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lockOpTimeout)
	defer cancel()
	l, err := ls.Renew(ctx, token, duration)
	if err != nil {
		return webdav.LockDetails{}, err
	}
	return webdav.LockDetails{Root: l.Root, Duration: l.Timeout, OwnerXML: l.OwnerXML, ZeroDepth: !l.Infinite}, nil
}

// Unlock releases a lock as webdav.LockSystem asks.
func (ls *LockSystem) Unlock(_ time.Time, token string) error {
	if strings.HasPrefix(token, probePrefix) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), lockOpTimeout)
	defer cancel()
	return ls.Release(ctx, token)
}

// String describes a lock for logs, without its owner text.
func (l Lock) String() string {
	scope := "exclusive"
	if l.Shared {
		scope = "shared"
	}
	return fmt.Sprintf("%s lock on %s (infinite=%v) until %s", scope, l.Root, l.Infinite, l.Expires.UTC().Format(time.RFC3339))
}
