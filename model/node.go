package model

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/uptrace/bun"
)

// Status of a node. A file being uploaded through tus is StatusNew until its
// last byte arrives; only completed nodes hold a name and appear in listings.
const (
	StatusNew       = "new"
	StatusCompleted = "completed"
)

// RootID is the id of the root folder, created by the first migration.
const RootID = "root"

// Node is a folder or a file in filegate's one namespace. Path and Lineage
// are materialised: Path is the clean path ("/a/b.txt") and Lineage the ids
// from the root down ("root/<id>/<id>"), which is the object the authorizer
// decides on, so a grant follows a node when it moves.
type Node struct {
	bun.BaseModel `bun:"table:nodes,alias:n"`

	ID          string     `bun:"id,pk"`
	ParentID    string     `bun:"parent_id,nullzero"`
	Name        string     `bun:"name"`
	Path        string     `bun:"path"`
	Lineage     string     `bun:"lineage"`
	IsDir       bool       `bun:"is_dir"`
	Size        int64      `bun:"size"`
	MimeType    string     `bun:"mime_type"`
	SHA256      string     `bun:"sha256"`
	ETag        string     `bun:"etag"`
	BlobKey     string     `bun:"blob_key"`
	CreatorID   string     `bun:"creator_id"`
	OwnerID     string     `bun:"owner_id"`
	Tags        []string   `bun:"tags,type:text"`
	Title       string     `bun:"title"`
	Description string     `bun:"description"`
	Source      string     `bun:"source"`
	PHI         bool       `bun:"phi"`
	Status      string     `bun:"status"`
	Version     int64      `bun:"version"`
	CreatedAt   time.Time  `bun:"created_at"`
	UpdatedAt   time.Time  `bun:"updated_at"`
	ModTime     time.Time  `bun:"mod_time"`
	ArchivedAt  *time.Time `bun:"archived_at"`
}

// Archived reports whether the node is archived.
func (n *Node) Archived() bool { return n.ArchivedAt != nil }

// FileMeta is the descriptive metadata a client may set on a file.
type FileMeta struct {
	MimeType    string
	Tags        []string
	Title       string
	Description string
	Source      string
	PHI         bool
	// ModTime is the client's modification time (X-OC-Mtime, PROPPATCH of
	// getlastmodified); zero means now.
	ModTime time.Time
}

// NewID returns a random 128-bit identifier in lowercase hex. Ids of nodes,
// uploads, tokens and keys are unguessable, so knowing one grants nothing.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // the kernel's CSPRNG never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// fileETag is a strong ETag derived from the content, so identical bytes
// give identical tags across instances and restarts.
func fileETag(sha256hex string) string {
	if len(sha256hex) > 32 {
		sha256hex = sha256hex[:32]
	}
	return `"` + sha256hex + `"`
}
