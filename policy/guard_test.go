package policy_test

import (
	"context"
	"errors"
	"testing"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

func TestRisks(t *testing.T) {
	for _, tc := range []struct {
		line  []string
		risky bool
	}{
		{policy.Grant(policy.Anyone, policy.LevelRead, "f1"), true},
		{policy.Grant(policy.Anonymous, policy.LevelMetadata, "f1"), true},
		{policy.Allow(policy.Anyone, "f1", "stat"), true},
		{policy.Membership(policy.Anonymous, "group:staff"), true},
		{policy.Allow("group:staff", "*", "read"), true},
		{policy.Allow("group:staff", "*", "(stat|read)"), true},
		{policy.Allow("group:staff", "root", "write"), true},
		{policy.Grant("group:staff", policy.LevelRead, "root"), true},
		{policy.Allow("group:staff", "*", "view_files"), false},
		{policy.Allow("group:staff", "f1", "read"), false},
		{policy.Grant("group:staff", policy.LevelFull, "f1"), false},
		{policy.Membership("user:alice", policy.AdminRole), false},
		{policy.Allow(policy.AdminRole, "*", "*"), false},
	} {
		got := policy.Risks(policy.Change{Add: [][]string{tc.line}}, "root")
		if (len(got) > 0) != tc.risky {
			t.Errorf("Risks(%q) = %v, want risky=%v", tc.line, got, tc.risky)
		}
	}
	// Removals are never risky.
	if got := policy.Risks(policy.Change{Remove: [][]string{policy.Grant(policy.Anyone, policy.LevelRead, "f1")}}, "root"); len(got) != 0 {
		t.Errorf("a removal was called risky: %v", got)
	}
}

func TestGuard(t *testing.T) {
	ctx := context.Background()
	db := dbtest.Open(t, dbtest.SQLite)
	a := newAuthorizer(t, db)
	apply(t, a, add(
		policy.Membership("user:root1", policy.AdminRole),
		policy.Membership("group:ops", policy.AdminRole),
		policy.Membership("user:root2", "group:ops"),
	))
	users := []string{"user:root1", "user:root2", "user:alice"}
	opts := policy.GuardOptions{Users: users, RootID: "root"}

	dropRoot1 := policy.Change{Remove: [][]string{policy.Membership("user:root1", policy.AdminRole)}}
	if _, err := a.Guard(ctx, dropRoot1, opts); err != nil {
		t.Errorf("removing one of two admins: %v", err)
	}
	dropBoth := policy.Change{
		Remove:         [][]string{policy.Membership("user:root1", policy.AdminRole)},
		RemoveMatching: []policy.Filter{{Ptype: "g", Values: []string{"", "group:ops"}}},
	}
	if _, err := a.Guard(ctx, dropBoth, opts); !errors.Is(err, policy.ErrLastAdmin) {
		t.Errorf("removing every admin: %v, want ErrLastAdmin", err)
	}
	if _, err := a.Guard(ctx, dropBoth, policy.GuardOptions{Users: users, Force: true}); !errors.Is(err, policy.ErrLastAdmin) {
		t.Errorf("forcing the removal of every admin: %v, want ErrLastAdmin", err)
	}
	// Only enabled users count: with root2 disabled, root1 is the last.
	if _, err := a.Guard(ctx, dropRoot1, policy.GuardOptions{Users: []string{"user:root1", "user:alice"}}); !errors.Is(err, policy.ErrLastAdmin) {
		t.Errorf("removing the last enabled admin: %v, want ErrLastAdmin", err)
	}
	// Replacing the last admin in the same batch is fine.
	swap := policy.Change{
		Remove: [][]string{policy.Membership("user:root1", policy.AdminRole)},
		Add:    [][]string{policy.Membership("user:alice", policy.AdminRole)},
	}
	if _, err := a.Guard(ctx, swap, policy.GuardOptions{Users: []string{"user:root1", "user:alice"}}); err != nil {
		t.Errorf("handing over admin: %v", err)
	}

	public := policy.Change{Add: [][]string{policy.Grant(policy.Anyone, policy.LevelRead, "f1")}}
	risks, err := a.Guard(ctx, public, opts)
	if !errors.Is(err, policy.ErrUnsafe) || len(risks) != 1 {
		t.Errorf("public grant: %v, %v; want ErrUnsafe and one risk", risks, err)
	}
	opts.Force = true
	if risks, err := a.Guard(ctx, public, opts); err != nil || len(risks) != 1 {
		t.Errorf("forced public grant: %v, %v", risks, err)
	}
	if _, err := a.Guard(ctx, policy.Change{Add: [][]string{{"g2", "anyone", "level:bogus", "f1"}}}, opts); !errors.Is(err, policy.ErrInvalid) {
		t.Errorf("invalid change: %v, want ErrInvalid", err)
	}
	// Guard applies nothing.
	if !a.Decide(ctx, "user:root1", "admin", "*").Allowed || a.Decide(ctx, "anonymous", "read", "root/f1").Allowed {
		t.Error("Guard changed the policy")
	}
}
