package policy

import (
	"context"
	"time"

	"github.com/uptrace/bun/driver/pgdriver"
)

// Run keeps memory in step with the database until ctx ends, then returns
// nil. Every PollInterval it reads the policy revision (one row); on
// PostgreSQL it also LISTENs for the NOTIFY each change sends at commit,
// so other instances' changes usually apply within milliseconds and at
// worst within one poll. Database errors are logged and retried at the
// next poll; decisions keep using the last good policy meanwhile.
func (a *Authorizer) Run(ctx context.Context) error {
	if _, ok := a.db.Driver().(pgdriver.Driver); ok {
		go a.listen(ctx) // only pgdriver connections can LISTEN here
	}
	t := time.NewTicker(a.poll)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-a.wake:
		}
		err := a.Sync(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			a.log.Error("policy: cannot follow policy changes; deciding with the last loaded policy", "err", err)
		case err == nil && failing:
			failing = false
			a.log.Info("policy: following policy changes again", "revision", a.Revision())
		}
	}
}

// listen forwards PostgreSQL notifications of policy changes to Run. The
// pgdriver listener reconnects by itself; polling covers the gaps.
func (a *Authorizer) listen(ctx context.Context) {
	ln := pgdriver.NewListener(a.db)
	defer ln.Close()
	if err := ln.Listen(ctx, notifyChannel); err != nil && ctx.Err() == nil {
		a.log.Warn("policy: LISTEN failed; relying on polling until the listener reconnects", "err", err)
	}
	ch := ln.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			select {
			case a.wake <- struct{}{}:
			default:
			}
		}
	}
}

// Sync brings memory up to the database's current revision now: it
// applies the change log since memory's revision, or reloads everything
// when the log does not reach back that far. Run calls it; tools may call
// it directly. It returns the database's error.
func (a *Authorizer) Sync(ctx context.Context) error {
	// Memory's revision first: a local Apply that commits between the two
	// reads then looks like a revision ahead of memory (applied from the
	// log), not like the database going back (a forced reload).
	cur := a.Revision()
	dbRev, err := readRevision(ctx, a.db)
	if err != nil {
		return err
	}
	switch {
	case dbRev == cur:
		return nil
	case dbRev < cur:
		// Only a restored or recreated database goes back; memory
		// describes a policy that no longer exists.
		a.log.Warn("policy: revision went back; reloading", "memory", cur, "database", dbRev)
		st, err := a.load(ctx)
		if err != nil {
			return err
		}
		a.swap(st, true)
		return nil
	}
	rev, entries, complete, err := readLog(ctx, a.db, cur)
	if err != nil {
		return err
	}
	if !complete {
		return a.Reload(ctx)
	}
	a.applyLog(rev, entries)
	return nil
}

// CatchUp syncs memory with the database when a denial may only reflect a
// change this instance has not heard of yet (a token minted or a grant
// made on another instance a moment ago), and reports whether memory
// changed, so the caller decides again. Callers take turns, so a flood
// of denials costs at most one database read at a time. A database error is logged and reported as no change:
// the denial stands.
func (a *Authorizer) CatchUp(ctx context.Context) bool {
	before := a.Revision()
	a.catchMu.Lock()
	defer a.catchMu.Unlock()
	if a.Revision() != before {
		return true // someone else caught up while we waited
	}
	if err := a.Sync(ctx); err != nil {
		a.log.Warn("policy: cannot check for newer policy after a denial", "err", err)
		return false
	}
	return a.Revision() != before
}
