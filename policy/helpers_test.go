package policy_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/migrations"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// modelText is casbin_model.conf, which the binary gets as
// filegate.CasbinModel; the policy package must not import the root
// package, so tests read the file.
func modelText(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("../casbin_model.conf")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func newAuthorizer(t testing.TB, db *bun.DB) *policy.Authorizer {
	t.Helper()
	a, err := policy.New(context.Background(), db, modelText(t), policy.Options{PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("policy.New: %v", err)
	}
	return a
}

func apply(t testing.TB, a *policy.Authorizer, ch policy.Change) {
	t.Helper()
	if err := a.Apply(context.Background(), ch); err != nil {
		t.Fatalf("Apply(%v): %v", ch, err)
	}
}

func add(lines ...[]string) policy.Change { return policy.Change{Add: lines} }

// check is one expected decision.
type check struct {
	sub, act, obj string
	want          bool
}

func expect(t *testing.T, a *policy.Authorizer, checks []check) {
	t.Helper()
	for _, c := range checks {
		d := a.Decide(context.Background(), c.sub, c.act, c.obj)
		if d.Allowed != c.want {
			t.Errorf("Decide(%s, %s, %s) = %v, want %v (rule %q)", c.sub, c.act, c.obj, d.Allowed, c.want, d.Rule)
		}
		if !d.Allowed && d.Rule != nil {
			t.Errorf("Decide(%s, %s, %s) denied with rule %q", c.sub, c.act, c.obj, d.Rule)
		}
		if d.Allowed && len(d.Rule) != 4 {
			t.Errorf("Decide(%s, %s, %s) allowed without a p line: %q", c.sub, c.act, c.obj, d.Rule)
		}
	}
}

// eventually polls cond until it holds or 5 s pass; it asserts the
// outcome, never the time taken.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within 5s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// openTwice opens two independent *bun.DB on one new, migrated database.
func openTwice(t *testing.T, kind dbtest.Kind) (*bun.DB, *bun.DB) {
	t.Helper()
	url := dbtest.URL(t, kind)
	var dbs [2]*bun.DB
	for i := range dbs {
		db, err := model.OpenDB(context.Background(), model.DBOptions{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	if _, err := migrations.Up(context.Background(), dbs[0]); err != nil {
		t.Fatal(err)
	}
	return dbs[0], dbs[1]
}

func sortedLines(lines [][]string) [][]string {
	out := slices.Clone(lines)
	sort.Slice(out, func(i, j int) bool { return slices.Compare(out[i], out[j]) < 0 })
	return out
}

func isInvalid(err error) bool { return errors.Is(err, policy.ErrInvalid) }

func replaceOnce(s, old, new string) string {
	if !strings.Contains(s, old) {
		panic("replaceOnce: " + old + " not found")
	}
	return strings.Replace(s, old, new, 1)
}
