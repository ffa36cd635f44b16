package policy_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

// TestWhatIfListsExactlyTheChangedDecisions previews a batch that grants
// a group read on a folder and removes a user's direct rule, and checks
// that the diffs are exactly the turned-around queries and that nothing
// was applied.
func TestWhatIfListsExactlyTheChangedDecisions(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		a := newAuthorizer(t, db)
		apply(t, a, add(
			policy.Membership("user:alice", "group:staff"),
			policy.Allow("user:bob", "f2", "write"),
		))
		rev := a.Revision()
		ch := policy.Change{
			Add:    [][]string{policy.Grant("group:staff", policy.LevelRead, "f1")},
			Remove: [][]string{policy.Allow("user:bob", "f2", "write")},
		}
		var qs []policy.Query
		for _, sub := range []string{"user:alice", "user:bob", "user:carol", "anonymous"} {
			for _, obj := range []string{"root", "root/f1", "root/f1/x", "root/f2", "root/f2/y"} {
				for _, act := range []string{"stat", "read", "write", "delete"} {
					qs = append(qs, policy.Query{Subject: sub, Action: act, Object: obj})
				}
			}
		}
		diffs, err := a.WhatIf(ctx, ch, qs)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range diffs {
			if d.Before.Allowed == d.After.Allowed {
				t.Errorf("diff %v does not change the decision", d)
			}
			if d.After.Allowed && len(d.After.Rule) != 4 {
				t.Errorf("diff %v: allowed after without a rule", d)
			}
			got = append(got, d.Subject+" "+d.Action+" "+d.Object)
		}
		want := []string{
			"user:alice stat root/f1", "user:alice read root/f1",
			"user:alice stat root/f1/x", "user:alice read root/f1/x",
			"user:bob write root/f2", "user:bob write root/f2/y",
		}
		if !slices.Equal(got, want) {
			t.Errorf("diffs\n got %q\nwant %q", got, want)
		}
		// Nothing applied: memory, revision and the database are unchanged.
		expect(t, a, []check{
			{"user:alice", "read", "root/f1", false},
			{"user:bob", "write", "root/f2", true},
		})
		if a.Revision() != rev {
			t.Errorf("revision moved from %d to %d", rev, a.Revision())
		}
		rules, err := a.Rules(ctx, policy.Filter{Ptype: "g2"})
		if err != nil || len(rules) != 0 {
			t.Errorf("stored grants after WhatIf: %v, %v", rules, err)
		}
		fresh := newAuthorizer(t, db)
		if !fresh.Decide(ctx, "user:bob", "write", "root/f2").Allowed {
			t.Error("a fresh load lost bob's rule")
		}
	})
}

// TestWhatIfRemoveMatchingAndInvalid expands filters from the database
// and refuses changes Apply would refuse.
func TestWhatIfRemoveMatchingAndInvalid(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		a := newAuthorizer(t, db)
		apply(t, a, add(
			policy.Grant("token:t1", policy.LevelFull, "f1"),
			policy.Grant("token:t2", policy.LevelRead, "f1"),
		))
		diffs, err := a.WhatIf(ctx, policy.Change{RemoveMatching: []policy.Filter{{Ptype: "g2", Values: []string{"", "", "f1"}}}},
			[]policy.Query{{"token:t1", "write", "root/f1"}, {"token:t2", "read", "root/f1"}, {"token:t3", "read", "root/f1"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(diffs) != 2 || diffs[0].Subject != "token:t1" || diffs[1].Subject != "token:t2" {
			t.Errorf("diffs = %+v, want t1 and t2 losing access", diffs)
		}
		if !a.Decide(ctx, "token:t1", "write", "root/f1").Allowed {
			t.Error("WhatIf applied the removal")
		}
		for _, ch := range []policy.Change{
			{Add: [][]string{{"p", "user:x", "*"}}},
			{Remove: [][]string{policy.Builtin()[0]}},
			{RemoveMatching: []policy.Filter{{Ptype: "g2"}}},
		} {
			if _, err := a.WhatIf(ctx, ch, nil); !errors.Is(err, policy.ErrInvalid) {
				t.Errorf("WhatIf(%v) = %v, want ErrInvalid", ch, err)
			}
		}
	})
}

// TestRolesAndMembers reads the closure both ways from memory.
func TestRolesAndMembers(t *testing.T) {
	db := dbtest.Open(t, dbtest.SQLite)
	a := newAuthorizer(t, db)
	apply(t, a, add(
		policy.Membership("user:alice", "group:staff"),
		policy.Membership("group:staff", "group:all"),
		policy.Membership("user:bob", "group:all"),
	))
	if got := a.RolesOf("user:alice"); !slices.Equal(got, []string{"group:staff", "group:all"}) {
		t.Errorf("RolesOf(alice) = %q", got)
	}
	if got := a.MembersOf("group:all", 0); !slices.Equal(got, []string{"group:staff", "user:bob", "user:alice"}) {
		t.Errorf("MembersOf(all) = %q", got)
	}
	if got := a.MembersOf("group:all", 1); len(got) != 1 {
		t.Errorf("MembersOf(all, 1) = %q", got)
	}
}
