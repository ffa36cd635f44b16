package davfs

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/uptrace/bun"
)

// ListingCache keeps the rendered children of recently listed folders, so
// that the listings desktop clients repeat (Finder and Explorer list a
// folder again on every visit, davfs2 on every stat) cost one index probe
// instead of reading and rendering every child.
//
// It is safe with several instances on one database: an entry is stamped
// with the folder's change sum (the listing_changes table, kept by
// triggers on nodes in the writer's own transaction) read before the
// children were, and served only while the database still shows that
// sum. A change committed anywhere moves the sum, so a stale entry can
// never be served; at worst a fresh one is rendered twice.
//
// Only listings that are the same for every caller who may read the
// folder are kept: no filtering by grants, no locks or dead properties
// below the folder, no quota properties.
type ListingCache struct {
	mu       sync.Mutex
	max      int64
	used     int64
	entryMax int64
	items    map[string]*list.Element
	lru      list.List // of *cachedListing, most recent first
	hits     int64
}

type cachedListing struct {
	key     string
	version int64
	body    []byte
}

// NewListingCache returns a cache holding at most maxBytes of rendered
// listings; one listing may take a quarter of that. maxBytes <= 0 gives
// nil, which caches nothing.
func NewListingCache(maxBytes int64) *ListingCache {
	if maxBytes <= 0 {
		return nil
	}
	return &ListingCache{max: maxBytes, entryMax: maxBytes / 4, items: map[string]*list.Element{}}
}

// get returns the body cached under key if it was rendered at version.
func (c *ListingCache) get(key string, version int64) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok {
		return nil, false
	}
	cl := e.Value.(*cachedListing)
	if cl.version != version {
		// Sums only grow: an entry behind the database never becomes
		// right again.
		c.remove(e)
		return nil, false
	}
	c.lru.MoveToFront(e)
	c.hits++
	return cl.body, true
}

// fits reports whether a body of about n bytes may be kept.
func (c *ListingCache) fits(n int64) bool { return c != nil && n <= c.entryMax }

// put keeps body under key, stamped with the version read before the
// rows it was rendered from.
func (c *ListingCache) put(key string, version int64, body []byte) {
	if !c.fits(int64(len(body))) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		if e.Value.(*cachedListing).version > version {
			return // a later render got there first
		}
		c.remove(e)
	}
	c.items[key] = c.lru.PushFront(&cachedListing{key: key, version: version, body: body})
	c.used += int64(len(body))
	for c.used > c.max {
		c.remove(c.lru.Back())
	}
}

func (c *ListingCache) remove(e *list.Element) {
	cl := c.lru.Remove(e).(*cachedListing)
	delete(c.items, cl.key)
	c.used -= int64(len(cl.body))
}

// foldAfter is how many change rows a folder may gather before a listing
// folds them into one, keeping the version probe a few index entries.
const foldAfter = 64

// listingVersion returns the folder's change sum: every committed change
// to a listed child adds one.
func (f *FS) listingVersion(ctx context.Context, folderID string) (int64, error) {
	var sum, rows int64
	err := f.db.NewSelect().TableExpr("listing_changes").
		ColumnExpr("COALESCE(SUM(weight), 0), COUNT(*)").
		Where("folder_id = ?", folderID).Scan(ctx, &sum, &rows)
	if err != nil {
		return 0, storeErr(err)
	}
	if rows > foldAfter {
		go f.foldChanges(folderID)
	}
	return sum, nil
}

// foldChanges replaces a folder's change rows by one row of the same
// weight. DELETE ... RETURNING sums exactly the rows it removed, so rows
// other transactions append meanwhile keep their weight, and the sum seen
// by readers never moves. A failure only leaves the rows for next time.
func (f *FS) foldChanges(folderID string) {
	if !f.folding.CompareAndSwap(false, true) {
		return // one fold at a time is plenty
	}
	defer f.folding.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := f.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var weights []int64
		if err := tx.NewRaw("DELETE FROM listing_changes WHERE folder_id = ? RETURNING weight", folderID).
			Scan(ctx, &weights); err != nil {
			return err
		}
		var sum int64
		for _, w := range weights {
			sum += w
		}
		if sum == 0 {
			return nil
		}
		_, err := tx.NewRaw("INSERT INTO listing_changes (folder_id, weight) VALUES (?, ?)", folderID, sum).Exec(ctx)
		return err
	})
	if err != nil {
		// Another writer won the race (SQLite's single writer, a
		// serialization failure); the rows stay for the next fold.
		f.log.Debug("fold listing changes", "folder", folderID, "err", err)
	}
}
