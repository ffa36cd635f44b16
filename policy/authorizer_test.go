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

// The tree used below: folder A (id ab12) with file f1, a sibling folder
// whose id starts like A's (ab123) with file f2, and an unrelated folder.
const (
	folderA   = "root/ab12"
	fileA     = "root/ab12/f1"
	prefixSib = "root/ab123"
	prefixF   = "root/ab123/f2"
	other     = "root/zz99"
)

func TestDefaultDeny(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		a := newAuthorizer(t, db)
		var checks []check
		for _, sub := range []string{"user:alice", "token:t1", policy.Anonymous} {
			for _, act := range []string{"stat", "read", "write", "delete", "share"} {
				for _, obj := range []string{"root", folderA, fileA} {
					checks = append(checks, check{sub, act, obj, false})
				}
			}
			checks = append(checks, check{sub, "admin", "*", false}, check{sub, "view_files", "*", false})
		}
		expect(t, a, checks)
		if got := a.Revision(); got < 1 {
			t.Errorf("revision after seeding = %d, want >= 1", got)
		}
		rules, err := a.Rules(context.Background(), policy.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(sortedLines(rules), sortedLines(policy.Builtin()), slices.Equal) {
			t.Errorf("fresh policy = %q, want the built-in lines", rules)
		}
	})
}

func TestSeedIsIdempotent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		a := newAuthorizer(t, db)
		rev := a.Revision()
		b := newAuthorizer(t, db)
		if err := b.Seed(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := b.Revision(); got != rev {
			t.Errorf("seeding a seeded database moved the revision from %d to %d", rev, got)
		}
		rules, _ := b.Rules(context.Background(), policy.Filter{Ptype: "p"})
		if len(rules) != len(policy.Builtin()) {
			t.Errorf("p lines after seeding twice = %d, want %d", len(rules), len(policy.Builtin()))
		}
	})
}

func TestAdminAllowedEverywhere(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		a := newAuthorizer(t, db)
		apply(t, a, add(policy.Membership("user:bob", policy.AdminRole)))
		var checks []check
		for _, act := range []string{"stat", "read", "write", "delete", "share"} {
			for _, obj := range []string{"root", folderA, fileA, prefixF, other} {
				checks = append(checks, check{"user:bob", act, obj, true})
			}
		}
		checks = append(checks,
			check{"user:bob", "admin", "*", true},
			check{"user:bob", "view_files", "*", true},
			check{"user:alice", "admin", "*", false},
			check{"user:bob", "fly", fileA, false},      // unknown action
			check{"user:bob", "read", "root//x", false}, // malformed lineage
			check{"role:admin", "read", fileA, false},   // roles are not requesters
			check{"group:staff", "admin", "*", false})
		expect(t, a, checks)
		d := a.Explain(context.Background(), "user:bob", "admin", "*")
		if !slices.Equal(d.Rule, []string{"p", policy.AdminRole, "*", "*"}) {
			t.Errorf("admin rule = %q", d.Rule)
		}
		if want := [][]string{{"g", "user:bob", policy.AdminRole}}; !slices.EqualFunc(d.Via, want, slices.Equal) {
			t.Errorf("admin via = %q, want %q", d.Via, want)
		}
	})
}

func TestGroupGrantCoversSubtreeOnly(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		a := newAuthorizer(t, db)
		apply(t, a, add(
			policy.Membership("user:alice", "group:staff"),
			policy.Membership("group:staff", "group:all"), // nested group
			policy.Grant("group:all", policy.LevelRead, "ab12"),
		))
		expect(t, a, []check{
			{"user:alice", "read", folderA, true},
			{"user:alice", "read", fileA, true},
			{"user:alice", "stat", fileA, true},
			{"user:alice", "write", fileA, false},
			{"user:alice", "share", fileA, false},
			{"user:alice", "read", "root", false},
			{"user:alice", "read", prefixSib, false},
			{"user:alice", "read", prefixF, false},
			{"user:alice", "read", other, false},
			{"user:alice", "view_files", "*", false},
			{"user:carol", "read", fileA, false},
		})
		d := a.Explain(context.Background(), "user:alice", "read", fileA)
		want := [][]string{
			{"g", "user:alice", "group:staff"},
			{"g", "group:staff", "group:all"},
			{"g2", "group:all", policy.LevelRead, "ab12"},
		}
		if !slices.EqualFunc(d.Via, want, slices.Equal) {
			t.Errorf("via = %q, want %q", d.Via, want)
		}
		if !slices.Equal(d.Rule, []string{"p", policy.LevelRead, "*", "(stat|read)"}) {
			t.Errorf("rule = %q", d.Rule)
		}
	})
}

func TestTokenLevels(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		a := newAuthorizer(t, db)
		apply(t, a, add(
			policy.Grant(policy.Token("r"), policy.LevelRead, "f1"),
			policy.Grant(policy.Token("f"), policy.LevelFull, "f1"),
			policy.Grant(policy.Token("m"), policy.LevelMetadata, "f1"),
		))
		allowed := map[string][]string{
			"token:r": {"stat", "read"},
			"token:f": {"stat", "read", "write", "delete", "share"},
			"token:m": {"stat"},
		}
		var checks []check
		for tok, acts := range allowed {
			for _, act := range []string{"stat", "read", "write", "delete", "share", "admin"} {
				checks = append(checks, check{tok, act, fileA, slices.Contains(acts, act)})
			}
			checks = append(checks, check{tok, "read", prefixF, false}, check{tok, "stat", folderA, false},
				check{tok, "view_files", "*", false})
		}
		expect(t, a, checks)
	})
}

func TestPublicGrantReachesAnonymous(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		a := newAuthorizer(t, db)
		apply(t, a, add(policy.Grant(policy.Anyone, policy.LevelRead, "f1")))
		expect(t, a, []check{
			{policy.Anonymous, "read", fileA, true},
			{policy.Anonymous, "stat", fileA, true},
			{policy.Anonymous, "write", fileA, false},
			{policy.Anonymous, "read", folderA, false},
			{policy.Anonymous, "read", prefixF, false},
			{"user:alice", "read", fileA, true},
			{"token:x", "read", fileA, true},
		})
		d := a.Explain(context.Background(), policy.Anonymous, "read", fileA)
		if want := [][]string{{"g2", policy.Anyone, policy.LevelRead, "f1"}}; !slices.EqualFunc(d.Via, want, slices.Equal) {
			t.Errorf("via = %q, want %q", d.Via, want)
		}
	})
}

func TestDirectRuleOnSubtree(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		a := newAuthorizer(t, db)
		rule := policy.Allow("group:staff", "ab12", "(read|write)")
		apply(t, a, add(policy.Membership("user:alice", "group:staff"), rule,
			policy.Allow("user:dave", policy.AnyObject, policy.ActViewFiles)))
		expect(t, a, []check{
			{"user:alice", "write", fileA, true},
			{"user:alice", "read", folderA, true},
			{"user:alice", "stat", fileA, false},
			{"user:alice", "delete", fileA, false},
			{"user:alice", "write", prefixF, false},
			{"user:alice", "write", "root", false},
			{"user:bob", "write", fileA, false},
			{"user:dave", "view_files", "*", true},
			{"user:dave", "read", fileA, false},
		})
		if d := a.Decide(context.Background(), "user:alice", "write", fileA); !slices.Equal(d.Rule, rule) {
			t.Errorf("rule = %q, want %q", d.Rule, rule)
		}
	})
}

func TestRemovalTakesEffectAtOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		a := newAuthorizer(t, db)
		grant := policy.Grant("token:t", policy.LevelFull, "ab12")
		member := policy.Membership("user:alice", "group:staff")
		staff := policy.Grant("group:staff", policy.LevelRead, "ab12")
		apply(t, a, add(grant, member, staff, policy.Grant("anyone", policy.LevelRead, "f1")))
		expect(t, a, []check{{"token:t", "write", fileA, true}, {"user:alice", "read", folderA, true}})

		apply(t, a, policy.Change{Remove: [][]string{grant}})
		apply(t, a, policy.Change{Remove: [][]string{member}})
		expect(t, a, []check{
			{"token:t", "write", fileA, false},
			{"token:t", "read", fileA, true}, // the public grant on f1 remains
			{"user:alice", "read", folderA, false},
		})
		// Removing every rule on a node, as purging it does.
		apply(t, a, policy.Change{RemoveMatching: []policy.Filter{{Ptype: "g2", Values: []string{"", "", "f1"}}}})
		expect(t, a, []check{{policy.Anonymous, "read", fileA, false}})
		left, err := a.Rules(ctx, policy.Filter{Ptype: "g2"})
		if err != nil {
			t.Fatal(err)
		}
		if want := [][]string{staff}; !slices.EqualFunc(left, want, slices.Equal) {
			t.Errorf("grants left = %q, want %q", left, want)
		}
		// Built-in lines survive a filter that matches them.
		apply(t, a, policy.Change{RemoveMatching: []policy.Filter{{Ptype: "p", Values: []string{policy.LevelRead}}}})
		apply(t, a, add(grant))
		expect(t, a, []check{{"token:t", "read", fileA, true}})
	})
}

func TestInvalidChangesAreRejectedWhole(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		a := newAuthorizer(t, db)
		good := policy.Grant("token:t", policy.LevelRead, "f1")
		bad := map[string]policy.Change{
			"unknown ptype":         add(good, []string{"g3", "user:a", "group:b"}),
			"too few values":        add(good, []string{"g2", "token:t", "level:read"}),
			"too many values":       add(good, []string{"g", "user:a", "group:b", "x"}),
			"empty field":           add(good, []string{"g", "", "group:b"}),
			"blank in field":        add(good, []string{"g", "user: a", "group:b"}),
			"comma in field":        add(good, []string{"g", "user:a,b", "group:b"}),
			"unknown level":         add(good, []string{"g2", "token:t", "level:owner", "f1"}),
			"unknown action":        add(good, policy.Allow("group:x", "f1", "(read|fly)")),
			"level rule on a node":  add(good, policy.Allow(policy.LevelRead, "f1", "write")),
			"node id with slash":    add(good, policy.Grant("token:t", policy.LevelRead, "root/f1")),
			"grant on *":            add(good, policy.Grant("token:t", policy.LevelRead, "*")),
			"unknown subject kind":  add(good, policy.Grant("alice", policy.LevelRead, "f1")),
			"anyone as member":      add(good, policy.Membership(policy.Anyone, "group:x")),
			"level as a group":      add(good, policy.Membership("user:a", policy.LevelFull)),
			"member of itself":      add(good, policy.Membership("group:x", "group:x")),
			"remove built-in":       {Add: [][]string{good}, Remove: [][]string{policy.Builtin()[0]}},
			"filter without values": {Add: [][]string{good}, RemoveMatching: []policy.Filter{{Ptype: "g2"}}},
			"filter without ptype":  {Add: [][]string{good}, RemoveMatching: []policy.Filter{{Values: []string{"token:t"}}}},
		}
		rev := a.Revision()
		for name, ch := range bad {
			if err := a.Apply(ctx, ch); !isInvalid(err) {
				t.Errorf("%s: Apply error = %v, want ErrInvalid", name, err)
			}
		}
		if got := a.Revision(); got != rev {
			t.Errorf("rejected changes moved the revision from %d to %d", rev, got)
		}
		if rules, _ := a.Rules(ctx, policy.Filter{Ptype: "g2"}); len(rules) != 0 {
			t.Errorf("rejected changes stored %q", rules)
		}
		expect(t, a, []check{{"token:t", "read", fileA, false}})
		if _, err := a.Rules(ctx, policy.Filter{Ptype: "x"}); !isInvalid(err) {
			t.Errorf("Rules with unknown ptype: %v, want ErrInvalid", err)
		}
	})
}

func TestNewRejectsOtherModels(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		text := modelText(t)
		for name, m := range map[string]string{
			"garbage":       "not a model",
			"other matcher": replaceOnce(text, "within(r.obj, p.obj)", "keyMatch(r.obj, p.obj)"),
			"no g2":         replaceOnce(text, "g2 = _, _, _", ""),
		} {
			if _, err := policy.New(context.Background(), db, m, policy.Options{}); !errors.Is(err, policy.ErrModel) {
				t.Errorf("%s: New error = %v, want ErrModel", name, err)
			}
		}
	})
}

func TestApplyTxJoinsCallersTransaction(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		a := newAuthorizer(t, db)
		grant := policy.Grant("token:t", policy.LevelFull, "f1")

		// Rolled back: nothing stored, nothing in memory.
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.ApplyTx(ctx, tx, add(grant)); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if rules, _ := a.Rules(ctx, policy.Filter{Ptype: "g2"}); len(rules) != 0 {
			t.Errorf("rolled back change stored %q", rules)
		}
		expect(t, a, []check{{"token:t", "write", fileA, false}})

		// Committed: the caller's own row and the grant land together.
		tx, err = db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO user_groups (name, created_at) VALUES ('staff', CURRENT_TIMESTAMP)"); err != nil {
			t.Fatal(err)
		}
		commit, err := a.ApplyTx(ctx, tx, add(grant))
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		commit()
		expect(t, a, []check{{"token:t", "write", fileA, true}})
		var groups int
		if err := db.NewRaw("SELECT count(*) FROM user_groups").Scan(ctx, &groups); err != nil || groups != 1 {
			t.Errorf("caller's row: count %d, err %v", groups, err)
		}
	})
}
