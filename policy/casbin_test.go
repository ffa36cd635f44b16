package policy_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
	"github.com/filegate/filegate/policy/bunadapter"
)

// TestDecideMatchesCasbin checks the indexed Decide against Casbin's own
// enforcer evaluating casbin_model.conf line by line, on random policies
// over a tree whose ids share prefixes (n1, n12) so that prefix mistakes
// show up.
func TestDecideMatchesCasbin(t *testing.T) {
	nodes := []string{"root", "n1", "n12", "n2", "n3", "n4", "n5"}
	objects := []string{"*", "root", "root/n1", "root/n12", "root/n2", "root/n1/n3",
		"root/n12/n4", "root/n1/n3/n5", "root/n12/n4/n5"}
	requesters := []string{"user:u1", "user:u2", "user:u3", "token:t1", "token:t2", policy.Anonymous}
	groups := []string{"group:g1", "group:g2", "group:g3"}
	actions := []string{"stat", "read", "write", "delete", "share", "admin", "view_files"}
	pActs := []string{"*", "read", "write", "(stat|read)", "(write|delete)", "view_files", "admin", "(share|stat)"}
	levels := []string{policy.LevelMetadata, policy.LevelRead, policy.LevelFull}

	pick := func(r *rand.Rand, s []string) string { return s[r.IntN(len(s))] }
	randomPolicy := func(r *rand.Rand) string {
		var sb strings.Builder
		line := func(l []string) { sb.WriteString(strings.Join(l, ", ") + "\n") }
		for range 4 + r.IntN(6) {
			member := pick(r, append(requesters, groups...))
			role := pick(r, groups)
			if r.IntN(12) == 0 {
				role = policy.AdminRole
			}
			if member != role {
				line(policy.Membership(member, role))
			}
		}
		for range 3 + r.IntN(10) {
			line(policy.Grant(pick(r, append(append(requesters, groups...), policy.Anyone)), pick(r, levels), pick(r, nodes)))
		}
		for range r.IntN(6) {
			obj := pick(r, nodes)
			if r.IntN(4) == 0 {
				obj = policy.AnyObject
			}
			line(policy.Allow(pick(r, append(append(groups, requesters[:3]...), policy.Anyone)), obj, pick(r, pActs)))
		}
		return sb.String()
	}

	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		a := newAuthorizer(t, db)
		allowedSeen, compared := 0, 0
		for trial := range 25 {
			r := rand.New(rand.NewPCG(uint64(trial), 7))
			text := randomPolicy(r)
			if _, err := a.ImportCSV(ctx, strings.NewReader(text), true); err != nil {
				t.Fatalf("trial %d: import: %v\n%s", trial, err, text)
			}
			ref, err := policy.NewEnforcer(modelText(t), bunadapter.New(db))
			if err != nil {
				t.Fatal(err)
			}
			for _, sub := range requesters {
				for _, act := range actions {
					for _, obj := range objects {
						want, err := ref.Enforce(sub, obj, act)
						if err != nil {
							t.Fatal(err)
						}
						got := a.Decide(ctx, sub, act, obj)
						compared++
						if got.Allowed {
							allowedSeen++
						}
						if got.Allowed != want {
							t.Fatalf("trial %d: Decide(%s, %s, %s) = %v, Casbin says %v (rule %q)\npolicy:\n%s",
								trial, sub, act, obj, got.Allowed, want, got.Rule, text)
						}
					}
				}
			}
		}
		// Both outcomes must have been exercised for the comparison to mean
		// anything.
		if allowedSeen == 0 || allowedSeen == compared {
			t.Fatalf("%d of %d requests allowed: the random policies are degenerate", allowedSeen, compared)
		}
		t.Logf("%d requests compared, %d allowed", compared, allowedSeen)
	})
}
