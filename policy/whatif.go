package policy

import (
	"context"
	"maps"
	"slices"

	"github.com/filegate/filegate/policy/bunadapter"
)

// Query is one request to decide: subject, action and object as Decide
// takes them.
type Query struct {
	Subject string `json:"subject"`
	Action  string `json:"action"`
	Object  string `json:"object"`
}

// Diff is a query whose answer a change would turn around.
type Diff struct {
	Query
	// Before is the decision under the current policy, After the one
	// with the change applied; Allowed differs between them. Rules are
	// copies, Via is not filled.
	Before Decision
	After  Decision
}

// MaxWhatIfQueries bounds the queries one WhatIf evaluates, so a preview
// costs milliseconds whatever the caller asks.
const MaxWhatIfQueries = 100_000

// WhatIf answers which of queries a change would decide differently,
// without applying it: it decides each query against the current policy
// and against a scratch copy of it with ch applied, and returns the queries
// whose Allowed differs, in their order. RemoveMatching filters are
// expanded from the database, as Apply would. Queries past
// MaxWhatIfQueries are ignored. The copy costs memory and time linear in
// the number of stored rules (about what loading them costs), which is why
// this is for admin previews, not requests. It returns ErrInvalid, like
// Apply, when ch does not fit the model, and the database's error when a
// filter cannot be expanded.
func (a *Authorizer) WhatIf(ctx context.Context, ch Change, queries []Query) ([]Diff, error) {
	before, after, err := a.evaluate(ctx, ch, queries)
	if err != nil {
		return nil, err
	}
	var out []Diff
	for i, q := range queries[:len(before)] {
		if before[i].Allowed != after[i].Allowed {
			out = append(out, Diff{Query: q, Before: before[i], After: after[i]})
		}
	}
	return out, nil
}

// evaluate decides queries before and after ch; both results have the
// same length, at most MaxWhatIfQueries.
func (a *Authorizer) evaluate(ctx context.Context, ch Change, queries []Query) (before, after []Decision, err error) {
	if err := ch.validate(); err != nil {
		return nil, nil, err
	}
	remove := slices.Clone(ch.Remove)
	for _, f := range ch.RemoveMatching {
		lines, err := bunadapter.Select(ctx, a.db, f)
		if err != nil {
			return nil, nil, err
		}
		for _, l := range lines {
			if !isBuiltin(l) {
				remove = append(remove, l)
			}
		}
	}
	if len(queries) > MaxWhatIfQueries {
		queries = queries[:MaxWhatIfQueries]
	}
	a.mu.RLock()
	before = decideAll(a.st, queries)
	scratch := a.st.clone()
	a.mu.RUnlock()
	applyLines(scratch, remove, ch.Add)
	return before, decideAll(scratch, queries), nil
}

func decideAll(st *state, queries []Query) []Decision {
	out := make([]Decision, len(queries))
	for i, q := range queries {
		if w, ok := st.decide(q.Subject, q.Action, q.Object); ok {
			out[i] = Decision{Allowed: true, Rule: slices.Clone(w.rule.line)}
		}
	}
	return out
}

// clone returns a deep copy of st that can be changed without touching
// st. p rules are immutable once indexed and are shared; every map and
// slice that add or remove modify is copied.
func (st *state) clone() *state {
	c := &state{
		rev:     st.rev,
		pGlobal: make(map[string]*ruleSet, len(st.pGlobal)),
		pNode:   make(map[pair]*ruleSet, len(st.pNode)),
		groups: &memberships{
			roles: cloneIndex(st.groups.roles),
			users: cloneIndex(st.groups.users),
		},
		grants: &grantIndex{links: maps.Clone(st.grants.links)},
	}
	for k, rs := range st.pGlobal {
		c.pGlobal[k] = &ruleSet{mask: rs.mask, rules: slices.Clone(rs.rules)}
	}
	for k, rs := range st.pNode {
		c.pNode[k] = &ruleSet{mask: rs.mask, rules: slices.Clone(rs.rules)}
	}
	return c
}

func cloneIndex(m map[string][]string) map[string][]string {
	out := make(map[string][]string, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}
