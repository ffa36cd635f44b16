package model

// HotPrepared reports whether the repository runs its hot lookups as
// prepared statements, for tests that must know which path they checked.
func (r *Repo) HotPrepared() bool {
	r.hot.mu.Lock()
	defer r.hot.mu.Unlock()
	return r.hot.prepared
}
