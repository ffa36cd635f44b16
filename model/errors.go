package model

import "errors"

// Sentinel errors returned by the metadata repository and the store. Callers
// compare with errors.Is; the gateway maps each one to an HTTP status in a
// single table, so a new sentinel needs an entry there too.
var (
	// ErrNotFound means the node, account or token does not exist, or is
	// archived and the call does not look at archived nodes.
	ErrNotFound = errors.New("not found")
	// ErrExists means a live sibling already has the name, or an account
	// with that name exists.
	ErrExists = errors.New("already exists")
	// ErrConflict means the operation contradicts the current state: a
	// parent that is not a folder, a move into its own subtree, a stale
	// version, or the removal of the last full token.
	ErrConflict = errors.New("conflict")
	// ErrInvalid means an argument is malformed: a bad name, path, level or
	// field value.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotEmpty means a folder still has children where the call needs it
	// empty.
	ErrNotEmpty = errors.New("folder not empty")
	// ErrPrecondition means an If-Match style precondition did not hold.
	ErrPrecondition = errors.New("precondition failed")
	// ErrUnavailable means the database or blob store cannot be reached;
	// the request may be retried later.
	ErrUnavailable = errors.New("temporarily unavailable")
	// ErrNoSpace means the blob store ran out of space or quota.
	ErrNoSpace = errors.New("insufficient storage")
	// ErrQuota means a write would take an account's live files past its
	// storage quota (see Cond.Quota).
	ErrQuota = errors.New("quota exceeded")
	// ErrTooLarge means a body exceeded a configured size limit.
	ErrTooLarge = errors.New("too large")
	// ErrLocked means a WebDAV lock protects the resource and the writer
	// holds no token for it (the files API has no way to submit one).
	ErrLocked = errors.New("locked")
	// ErrCorrupt means a file's stored bytes do not match the size or
	// SHA-256 recorded when they were written.
	ErrCorrupt = errors.New("stored bytes do not match their record")
)
