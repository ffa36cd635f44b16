package gateway

import (
	"context"

	"github.com/filegate/filegate/model"
)

// unlocked returns model.ErrLocked when a WebDAV lock protects what an API
// write changes, so a document someone has open in an editor over WebDAV
// cannot be replaced, deleted or moved under them through the API. own
// are the resources written (with their subtrees when subtree is set, for
// deletes and moves); members are folders gaining or losing a member,
// which a lock on the folder protects. The API has no way to submit a lock
// token, so the holder releases the lock (or it times out) first.
func (a *api) unlocked(ctx context.Context, own []string, subtree bool, members ...string) error {
	held, err := a.locks.Protects(ctx, own, subtree, members)
	if err != nil {
		return err
	}
	if held {
		return model.ErrLocked
	}
	return nil
}

// parentPath is the folder that holds the node at the clean path p.
func parentPath(p string) string {
	dir, _ := model.SplitPath(p)
	return dir
}
