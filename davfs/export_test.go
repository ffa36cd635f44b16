package davfs

// Hits returns how many listings the cache has served, for tests that
// must know the cache was used and not only that answers were right.
func (c *ListingCache) Hits() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits
}
