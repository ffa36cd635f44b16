package tus

// LockHeld reports whether this process holds the lock on upload id, so
// tests can start a second request exactly while a first one holds it.
func LockHeld(h *Handler, id string) bool {
	h.locks.mu.Lock()
	defer h.locks.mu.Unlock()
	_, ok := h.locks.held[id]
	return ok
}
