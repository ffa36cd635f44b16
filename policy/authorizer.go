package policy

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/policy/bunadapter"
)

// Options tunes an Authorizer. The zero value is ready to use.
type Options struct {
	// PollInterval is how often Run reads the policy revision to pick up
	// changes made by other instances or by `filegate policy`; zero means
	// 250ms.
	PollInterval time.Duration
	// Logger receives reload and watcher problems; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Decision is the answer to one request.
type Decision struct {
	// Allowed is true when some rule allows the request; everything else
	// is denied.
	Allowed bool
	// Rule is the p line that allowed the request, ptype first, e.g.
	// ["p", "level:read", "*", "(stat|read)"]; nil when denied. It is
	// shared with the Authorizer and must not be modified.
	Rule []string
	// Via lists the stored g and g2 links the rule applied through, e.g.
	// ["g", "user:alice", "group:staff"] then ["g2", "group:staff",
	// "level:read", "<node id>"]. Only Explain fills it.
	Via [][]string
}

// Filter selects rules: an empty Ptype matches every ptype, and Values are
// compared position by position with the rule's values, "" matching
// anything. {Ptype: "g2", Values: []string{"", "", id}} selects the grants
// on node id.
type Filter = bunadapter.Filter

// Change is a set of rule edits applied atomically. Each rule is a line,
// ptype first: {"g2", "token:abc", "level:full", "<node id>"}. Removals
// happen before additions, so a Change can replace a rule. Adding a rule
// that exists or removing one that does not is not an error.
type Change struct {
	Add    [][]string
	Remove [][]string
	// RemoveMatching removes every stored rule that matches one of the
	// filters, e.g. all grants on a purged node or all links of a deleted
	// user. Each filter needs a ptype and at least one value. Built-in
	// rules are never removed this way.
	RemoveMatching []Filter
}

func (c Change) empty() bool {
	return len(c.Add)+len(c.Remove)+len(c.RemoveMatching) == 0
}

// validate checks every part of the change, so that nothing is written
// unless all of it fits the model.
func (c Change) validate() error {
	for i, l := range c.Add {
		if err := Validate(l); err != nil {
			return fmt.Errorf("add[%d]: %w", i, err)
		}
	}
	for i, l := range c.Remove {
		if err := Validate(l); err != nil {
			return fmt.Errorf("remove[%d]: %w", i, err)
		}
		if isBuiltin(l) {
			return fmt.Errorf("remove[%d]: %w: %q is built in", i, ErrInvalid, l)
		}
	}
	for i, f := range c.RemoveMatching {
		if err := checkFilter(f, true); err != nil {
			return fmt.Errorf("removeMatching[%d]: %w", i, err)
		}
	}
	return nil
}

// checkFilter rejects filters that reach past the ptype's values or hold
// malformed values; strict also requires a ptype and at least one value,
// so that a removal cannot wipe a whole table by accident.
func checkFilter(f Filter, strict bool) error {
	max := bunadapter.MaxValues
	if f.Ptype != "" {
		n, ok := arity[f.Ptype]
		if !ok {
			return fmt.Errorf("%w: unknown ptype %q", ErrInvalid, f.Ptype)
		}
		max = n
	} else if strict {
		return fmt.Errorf("%w: filter needs a ptype", ErrInvalid)
	}
	if len(f.Values) > max {
		return fmt.Errorf("%w: filter has %d values, %s has %d", ErrInvalid, len(f.Values), f.Ptype, max)
	}
	some := false
	for _, v := range f.Values {
		if v == "" {
			continue
		}
		if err := checkField(v); err != nil {
			return err
		}
		some = true
	}
	if strict && !some {
		return fmt.Errorf("%w: filter needs at least one value", ErrInvalid)
	}
	return nil
}

// localChange is a change this instance committed whose revision is ahead
// of the state's: it is applied to memory at once and applied again on
// top of any older snapshot or log swapped in later, until the state's
// revision reaches it.
type localChange struct {
	rev         int64
	remove, add [][]string
}

// Authorizer decides requests against the policy held in the database,
// from an in-memory index that it keeps in step with the database. It is
// safe for concurrent use: decisions take a read lock and never wait for
// the database.
type Authorizer struct {
	db   *bun.DB
	poll time.Duration
	log  *slog.Logger
	wake chan struct{}

	mu      sync.RWMutex
	st      *state
	pending []localChange

	catchMu sync.Mutex // one CatchUp reads the database at a time
}

// New checks the model text (filegate.CasbinModel), seeds the built-in
// rules if they are missing and loads the whole policy. Call Run to follow
// changes made by other instances and by `filegate policy`; changes made
// through this Authorizer apply to it at once either way. It returns
// ErrModel for a model other than the one this package enforces, and the
// database's error if the policy cannot be seeded or read.
func New(ctx context.Context, db *bun.DB, modelText string, opts Options) (*Authorizer, error) {
	if _, err := parseModel(modelText); err != nil {
		return nil, err
	}
	a := &Authorizer{db: db, poll: opts.PollInterval, log: opts.Logger, wake: make(chan struct{}, 1)}
	if a.poll <= 0 {
		a.poll = 250 * time.Millisecond
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if err := a.Seed(ctx); err != nil {
		return nil, err
	}
	if err := a.Reload(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// Decide answers whether sub may do act on obj. sub is "user:<name>",
// "token:<id>" or "anonymous"; obj is a node's lineage ("root/<id>/<id>")
// or "*" for actions not about one node. Any other subject, an unknown
// action or a malformed object is denied. Decide reads memory only; its
// cost depends on the lineage depth and the subject's groups, not on how
// many rules exist. Decision.Rule is filled, Decision.Via is not.
func (a *Authorizer) Decide(_ context.Context, sub, act, obj string) Decision {
	a.mu.RLock()
	w, ok := a.st.decide(sub, act, obj)
	a.mu.RUnlock()
	if !ok {
		return Decision{}
	}
	return Decision{Allowed: true, Rule: w.rule.line}
}

// Explain answers like Decide and also lists, in Decision.Via, the
// memberships and grant the allowing rule applied through. It allocates
// and is meant for audit logs and admin tools, not for every request.
func (a *Authorizer) Explain(_ context.Context, sub, act, obj string) Decision {
	a.mu.RLock()
	defer a.mu.RUnlock()
	w, ok := a.st.decide(sub, act, obj)
	if !ok {
		return Decision{}
	}
	return Decision{Allowed: true, Rule: slices.Clone(w.rule.line), Via: a.st.via(sub, w)}
}

// Revision returns the policy revision this Authorizer's memory reflects.
func (a *Authorizer) Revision() int64 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.st.rev
}

// Apply validates the change and writes it in one transaction with a new
// policy revision; the next Decide sees it. It returns ErrInvalid, and
// writes nothing, if any part of the change does not fit the model, and
// the database's error if the transaction fails.
func (a *Authorizer) Apply(ctx context.Context, ch Change) error {
	commit, err := a.ApplyTx(ctx, a.db, ch)
	if err != nil {
		return err
	}
	commit()
	return nil
}

// ApplyTx is Apply inside a caller's transaction (or on db directly, which
// behaves like Apply without the memory update). The caller commits its
// transaction and then calls commit, which updates memory; if the caller
// rolls back it must not call commit. Should commit never be called after
// a successful commit, Run still picks the change up from the revision.
// It returns ErrInvalid, and writes nothing, if any part of the change does
// not fit the model, and the database's error if a statement fails.
func (a *Authorizer) ApplyTx(ctx context.Context, db bun.IDB, ch Change) (commit func(), err error) {
	if err := ch.validate(); err != nil {
		return nil, err
	}
	if ch.empty() {
		return func() {}, nil
	}
	var rev int64
	var removed [][]string
	err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		if rev, err = bumpRevision(ctx, tx); err != nil {
			return err
		}
		removed = slices.Clone(ch.Remove)
		if _, err := bunadapter.Delete(ctx, tx, ch.Remove); err != nil {
			return err
		}
		var restore [][]string
		for _, f := range ch.RemoveMatching {
			lines, err := bunadapter.DeleteMatching(ctx, tx, f)
			if err != nil {
				return err
			}
			for _, l := range lines {
				if isBuiltin(l) {
					restore = append(restore, l)
				} else {
					removed = append(removed, l)
				}
			}
		}
		if _, err := bunadapter.Insert(ctx, tx, restore); err != nil {
			return err
		}
		if _, err := bunadapter.Insert(ctx, tx, ch.Add); err != nil {
			return err
		}
		return writeLog(ctx, tx, rev, removed, ch.Add, false)
	})
	if err != nil {
		return nil, err
	}
	// Keep copies: the change is replayed later and the caller may reuse
	// its slices.
	removed, add := cloneLines(removed), cloneLines(ch.Add)
	return func() { a.applyLocal(rev, removed, add) }, nil
}

// Seed inserts the built-in rules (Builtin) that are missing, as one
// change. It is idempotent; New calls it. It returns the database's error.
func (a *Authorizer) Seed(ctx context.Context) error {
	var missing [][]string
	for _, l := range builtin {
		n, err := a.db.NewSelect().TableExpr("casbin_rule").
			Where("ptype = ? AND v0 = ? AND v1 = ? AND v2 = ?", l[0], l[1], l[2], l[3]).Count(ctx)
		if err != nil {
			return fmt.Errorf("check built-in policy: %w", err)
		}
		if n == 0 {
			missing = append(missing, l)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	var rev int64
	err := a.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		if rev, err = bumpRevision(ctx, tx); err != nil {
			return err
		}
		if _, err := bunadapter.Insert(ctx, tx, missing); err != nil {
			return err
		}
		return writeLog(ctx, tx, rev, nil, missing, false)
	})
	if err != nil {
		return fmt.Errorf("seed policy: %w", err)
	}
	a.applyLocal(rev, nil, missing)
	return nil
}

// Rules lists the stored rules that match f, ptype first, in the order
// they were added. It reads the database, not memory. It returns
// ErrInvalid for a filter with an unknown ptype or too many values.
func (a *Authorizer) Rules(ctx context.Context, f Filter) ([][]string, error) {
	if err := checkFilter(f, false); err != nil {
		return nil, err
	}
	return bunadapter.Select(ctx, a.db, f)
}

// Reload reads the whole policy from one database snapshot and swaps it
// in if it is newer than memory. Run calls it when the change log cannot
// bring memory up to date; New calls it once. It returns the database's
// error.
func (a *Authorizer) Reload(ctx context.Context) error {
	st, err := a.load(ctx)
	if err != nil {
		return err
	}
	a.swap(st, false)
	return nil
}

// load builds a new state from one snapshot. Stored lines that do not fit
// the model (written around this package) are skipped and logged: every
// line only ever allows, so skipping one can only deny.
func (a *Authorizer) load(ctx context.Context) (*state, error) {
	tx, err := snapshotTx(ctx, a.db)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	defer tx.Rollback()
	st := newState()
	if st.rev, err = readRevision(ctx, tx); err != nil {
		return nil, err
	}
	skipped := 0
	err = bunadapter.Each(ctx, tx, Filter{}, func(line []string) error {
		if Validate(line) != nil {
			skipped++
			return nil
		}
		st.add(line)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	if skipped > 0 {
		a.log.Warn("policy: skipped stored rules that do not fit the model", "count", skipped)
	}
	return st, nil
}

func cloneLines(lines [][]string) [][]string {
	out := make([][]string, len(lines))
	for i, l := range lines {
		out[i] = slices.Clone(l)
	}
	return out
}

// applyLines applies validated removals then additions to st.
func applyLines(st *state, remove, add [][]string) {
	for _, l := range remove {
		if Validate(l) == nil {
			st.remove(l)
		}
	}
	for _, l := range add {
		if Validate(l) == nil {
			st.add(l)
		}
	}
}

// applyLocal puts a committed local change into memory right away.
func (a *Authorizer) applyLocal(rev int64, remove, add [][]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.st == nil || rev <= a.st.rev {
		return // not loaded yet, or memory already reflects it
	}
	applyLines(a.st, remove, add)
	i, _ := slices.BinarySearchFunc(a.pending, rev, func(c localChange, r int64) int { return int(c.rev - r) })
	a.pending = slices.Insert(a.pending, i, localChange{rev: rev, remove: remove, add: add})
	a.settle()
}

// settle advances the state's revision over pending changes that follow
// it directly, and asks Run to fetch the missing revisions if a gap
// remains. The caller holds mu.
func (a *Authorizer) settle() {
	a.pending = slices.DeleteFunc(a.pending, func(c localChange) bool { return c.rev <= a.st.rev })
	for len(a.pending) > 0 && a.pending[0].rev == a.st.rev+1 {
		a.st.rev++
		a.pending = a.pending[1:]
	}
	if len(a.pending) > 0 {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

// reapplyPending puts the local changes newer than the state back on top
// of it, in revision order. The caller holds mu.
func (a *Authorizer) reapplyPending() {
	for _, c := range a.pending {
		if c.rev > a.st.rev {
			applyLines(a.st, c.remove, c.add)
		}
	}
	a.settle()
}

// swap installs a freshly loaded state unless memory is already at least
// as new; force installs it anyway (the database's revision went back).
func (a *Authorizer) swap(st *state, force bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.st != nil && st.rev <= a.st.rev && !force {
		return
	}
	a.st = st
	if force {
		a.pending = nil // changes to a database that is gone
	}
	a.reapplyPending()
}

// applyLog applies the change log entries up to rev.
func (a *Authorizer) applyLog(rev int64, entries []logEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rev <= a.st.rev {
		return
	}
	for _, e := range entries {
		if e.rev <= a.st.rev {
			continue
		}
		switch e.op {
		case opAdd:
			applyLines(a.st, nil, [][]string{e.line})
		case opRemove:
			applyLines(a.st, [][]string{e.line}, nil)
		}
	}
	a.st.rev = rev
	a.reapplyPending()
}
