package bunadapter

import (
	"context"
	"database/sql"

	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"
	"github.com/uptrace/bun"
)

// Adapter is a Casbin adapter over the casbin_rule table of one bun.IDB: a
// *bun.DB, or a bun.Tx when the writes must join a caller's transaction.
// Its Casbin-facing methods without a context use context.Background(),
// because Casbin's interfaces give them none; prefer the ...Ctx variants.
type Adapter struct {
	db bun.IDB
}

// Compile-time checks of the Casbin interfaces Adapter implements.
var (
	_ persist.Adapter                 = (*Adapter)(nil)
	_ persist.BatchAdapter            = (*Adapter)(nil)
	_ persist.UpdatableAdapter        = (*Adapter)(nil)
	_ persist.ContextAdapter          = (*Adapter)(nil)
	_ persist.ContextBatchAdapter     = (*Adapter)(nil)
	_ persist.ContextUpdatableAdapter = (*Adapter)(nil)
)

// New returns an adapter that reads and writes through db.
func New(db bun.IDB) *Adapter {
	return &Adapter{db: db}
}

// LoadPolicy loads every stored line into m.
func (a *Adapter) LoadPolicy(m model.Model) error {
	return a.LoadPolicyCtx(context.Background(), m)
}

// LoadPolicyCtx loads every stored line into m, skipping duplicates the
// way Casbin's own adapters do. It returns the database error or the
// model's error for a line whose ptype the model does not define.
func (a *Adapter) LoadPolicyCtx(ctx context.Context, m model.Model) error {
	return Each(ctx, a.db, Filter{}, func(line []string) error {
		return persist.LoadPolicyArray(line, m)
	})
}

// SavePolicy replaces every stored line with the policy held in m.
func (a *Adapter) SavePolicy(m model.Model) error {
	return a.SavePolicyCtx(context.Background(), m)
}

// SavePolicyCtx replaces every stored line with the policy held in m, in
// one transaction (a savepoint when the adapter runs on a bun.Tx). It
// returns ErrBadLine for a line with too many values.
func (a *Adapter) SavePolicyCtx(ctx context.Context, m model.Model) error {
	var lines [][]string
	for _, sec := range []string{"p", "g"} {
		for ptype, ast := range m[sec] {
			for _, rule := range ast.Policy {
				lines = append(lines, append([]string{ptype}, rule...))
			}
		}
	}
	return a.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := DeleteAll(ctx, tx); err != nil {
			return err
		}
		_, err := Insert(ctx, tx, lines)
		return err
	})
}

// AddPolicy stores one line; storing a line that exists is a no-op.
func (a *Adapter) AddPolicy(sec, ptype string, rule []string) error {
	return a.AddPolicyCtx(context.Background(), sec, ptype, rule)
}

// AddPolicyCtx stores one line; storing a line that exists is a no-op. It
// returns ErrBadLine for a malformed line.
func (a *Adapter) AddPolicyCtx(ctx context.Context, _, ptype string, rule []string) error {
	_, err := Insert(ctx, a.db, [][]string{withType(ptype, rule)})
	return err
}

// AddPolicies stores lines atomically.
func (a *Adapter) AddPolicies(sec, ptype string, rules [][]string) error {
	return a.AddPoliciesCtx(context.Background(), sec, ptype, rules)
}

// AddPoliciesCtx stores lines in one transaction; lines that exist are
// skipped. It returns ErrBadLine for a malformed line, storing none.
func (a *Adapter) AddPoliciesCtx(ctx context.Context, _, ptype string, rules [][]string) error {
	return a.inTx(ctx, func(ctx context.Context, tx bun.IDB) error {
		_, err := Insert(ctx, tx, withTypes(ptype, rules))
		return err
	})
}

// RemovePolicy removes one line; removing a missing line is a no-op.
func (a *Adapter) RemovePolicy(sec, ptype string, rule []string) error {
	return a.RemovePolicyCtx(context.Background(), sec, ptype, rule)
}

// RemovePolicyCtx removes one line; removing a missing line is a no-op. It
// returns ErrBadLine for a malformed line.
func (a *Adapter) RemovePolicyCtx(ctx context.Context, _, ptype string, rule []string) error {
	_, err := Delete(ctx, a.db, [][]string{withType(ptype, rule)})
	return err
}

// RemovePolicies removes lines atomically.
func (a *Adapter) RemovePolicies(sec, ptype string, rules [][]string) error {
	return a.RemovePoliciesCtx(context.Background(), sec, ptype, rules)
}

// RemovePoliciesCtx removes lines in one transaction. It returns
// ErrBadLine for a malformed line, removing none.
func (a *Adapter) RemovePoliciesCtx(ctx context.Context, _, ptype string, rules [][]string) error {
	return a.inTx(ctx, func(ctx context.Context, tx bun.IDB) error {
		_, err := Delete(ctx, tx, withTypes(ptype, rules))
		return err
	})
}

// RemoveFilteredPolicy removes the lines of ptype whose values from
// fieldIndex on equal fieldValues ("" matches anything).
func (a *Adapter) RemoveFilteredPolicy(sec, ptype string, fieldIndex int, fieldValues ...string) error {
	return a.RemoveFilteredPolicyCtx(context.Background(), sec, ptype, fieldIndex, fieldValues...)
}

// RemoveFilteredPolicyCtx removes the lines of ptype whose values from
// fieldIndex on equal fieldValues ("" matches anything). It returns
// ErrBadLine when the filter reaches past v5.
func (a *Adapter) RemoveFilteredPolicyCtx(ctx context.Context, _, ptype string, fieldIndex int, fieldValues ...string) error {
	_, err := DeleteMatching(ctx, a.db, FieldFilter(ptype, fieldIndex, fieldValues...))
	return err
}

// UpdatePolicy replaces one line with another.
func (a *Adapter) UpdatePolicy(sec, ptype string, oldRule, newRule []string) error {
	return a.UpdatePolicyCtx(context.Background(), sec, ptype, oldRule, newRule)
}

// UpdatePolicyCtx replaces one line with another in one transaction. It
// returns ErrBadLine for a malformed line.
func (a *Adapter) UpdatePolicyCtx(ctx context.Context, sec, ptype string, oldRule, newRule []string) error {
	return a.UpdatePoliciesCtx(ctx, sec, ptype, [][]string{oldRule}, [][]string{newRule})
}

// UpdatePolicies replaces lines with others.
func (a *Adapter) UpdatePolicies(sec, ptype string, oldRules, newRules [][]string) error {
	return a.UpdatePoliciesCtx(context.Background(), sec, ptype, oldRules, newRules)
}

// UpdatePoliciesCtx removes oldRules and stores newRules in one
// transaction. It returns ErrBadLine for a malformed line, changing
// nothing.
func (a *Adapter) UpdatePoliciesCtx(ctx context.Context, _, ptype string, oldRules, newRules [][]string) error {
	return a.inTx(ctx, func(ctx context.Context, tx bun.IDB) error {
		if _, err := Delete(ctx, tx, withTypes(ptype, oldRules)); err != nil {
			return err
		}
		_, err := Insert(ctx, tx, withTypes(ptype, newRules))
		return err
	})
}

// UpdateFilteredPolicies replaces the lines that match a filter.
func (a *Adapter) UpdateFilteredPolicies(sec, ptype string, newRules [][]string, fieldIndex int, fieldValues ...string) ([][]string, error) {
	return a.UpdateFilteredPoliciesCtx(context.Background(), sec, ptype, newRules, fieldIndex, fieldValues...)
}

// UpdateFilteredPoliciesCtx removes the lines of ptype that match the
// filter, stores newRules, and returns the removed rules without their
// ptype, all in one transaction. It returns ErrBadLine for a malformed
// line or filter, changing nothing.
func (a *Adapter) UpdateFilteredPoliciesCtx(ctx context.Context, _, ptype string, newRules [][]string, fieldIndex int, fieldValues ...string) ([][]string, error) {
	var old [][]string
	err := a.inTx(ctx, func(ctx context.Context, tx bun.IDB) error {
		removed, err := DeleteMatching(ctx, tx, FieldFilter(ptype, fieldIndex, fieldValues...))
		if err != nil {
			return err
		}
		for _, line := range removed {
			old = append(old, line[1:])
		}
		_, err = Insert(ctx, tx, withTypes(ptype, newRules))
		return err
	})
	return old, err
}

func (a *Adapter) inTx(ctx context.Context, fn func(ctx context.Context, tx bun.IDB) error) error {
	return a.db.RunInTx(ctx, &sql.TxOptions{}, func(ctx context.Context, tx bun.Tx) error {
		return fn(ctx, tx)
	})
}

func withType(ptype string, rule []string) []string {
	return append([]string{ptype}, rule...)
}

func withTypes(ptype string, rules [][]string) [][]string {
	out := make([][]string, len(rules))
	for i, r := range rules {
		out[i] = withType(ptype, r)
	}
	return out
}
