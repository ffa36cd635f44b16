package bunadapter_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"sort"
	"strconv"
	"testing"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy/bunadapter"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// rbacModel is a plain Casbin RBAC-with-domains model: the adapter must
// serve any model, not only filegate's.
const rbacModel = `
[request_definition]
r = sub, dom, obj, act
[policy_definition]
p = sub, dom, obj, act
[role_definition]
g = _, _, _
[policy_effect]
e = some(where (p.eft == allow))
[matchers]
m = g(r.sub, p.sub, r.dom) && r.dom == p.dom && r.obj == p.obj && r.act == p.act
`

func sorted(lines [][]string) [][]string {
	out := slices.Clone(lines)
	sort.Slice(out, func(i, j int) bool { return slices.Compare(out[i], out[j]) < 0 })
	return out
}

func equal(a, b [][]string) bool { return slices.EqualFunc(sorted(a), sorted(b), slices.Equal) }

func TestInsertDeleteSelect(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		lines := [][]string{
			{"p", "a", "d1", "o1", "read"},
			{"p", "b", "d1", "o2", "write"},
			{"g", "alice", "a", "d1"},
			{"g", "bob", "b", "d1"},
			{"g", "bob", "a", "d2"},
		}
		n, err := bunadapter.Insert(ctx, db, lines)
		if err != nil || n != int64(len(lines)) {
			t.Fatalf("Insert = %d, %v", n, err)
		}
		if n, err := bunadapter.Insert(ctx, db, lines[:2]); err != nil || n != 0 {
			t.Errorf("inserting existing lines = %d, %v; want 0, nil", n, err)
		}
		all, err := bunadapter.Select(ctx, db, bunadapter.Filter{})
		if err != nil || !slices.EqualFunc(all, lines, slices.Equal) {
			t.Errorf("Select all = %q, %v; want insertion order %q", all, err, lines)
		}
		got, _ := bunadapter.Select(ctx, db, bunadapter.Filter{Ptype: "g", Values: []string{"bob"}})
		if want := lines[3:]; !equal(got, want) {
			t.Errorf("g lines of bob = %q, want %q", got, want)
		}
		got, _ = bunadapter.Select(ctx, db, bunadapter.FieldFilter("g", 2, "d1"))
		if want := lines[2:4]; !equal(got, want) {
			t.Errorf("g lines in d1 = %q, want %q", got, want)
		}
		if n, err := bunadapter.Delete(ctx, db, [][]string{lines[0], {"p", "nobody", "x", "y", "z"}}); err != nil || n != 1 {
			t.Errorf("Delete = %d, %v; want 1", n, err)
		}
		removed, err := bunadapter.DeleteMatching(ctx, db, bunadapter.Filter{Ptype: "g", Values: []string{"bob"}})
		if err != nil || !equal(removed, lines[3:]) {
			t.Errorf("DeleteMatching = %q, %v; want %q", removed, err, lines[3:])
		}
		left, _ := bunadapter.Select(ctx, db, bunadapter.Filter{})
		if want := [][]string{lines[1], lines[2]}; !equal(left, want) {
			t.Errorf("left = %q, want %q", left, want)
		}
		if _, err := bunadapter.Insert(ctx, db, [][]string{{"p", "1", "2", "3", "4", "5", "6", "7"}}); !errors.Is(err, bunadapter.ErrBadLine) {
			t.Errorf("8-value line: %v, want ErrBadLine", err)
		}
		if _, err := bunadapter.Insert(ctx, db, [][]string{{}}); !errors.Is(err, bunadapter.ErrBadLine) {
			t.Errorf("empty line: %v, want ErrBadLine", err)
		}
	})
}

func TestManyLinesInChunks(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		var lines [][]string
		for i := range 1234 {
			lines = append(lines, []string{"g2", "token:" + string(rune('a'+i%26)), "level:read", "n" + strconv.Itoa(i)})
		}
		if n, err := bunadapter.Insert(ctx, db, lines); err != nil || n != int64(len(lines)) {
			t.Fatalf("Insert = %d, %v", n, err)
		}
		if n, err := bunadapter.Delete(ctx, db, lines[:1001]); err != nil || n != 1001 {
			t.Fatalf("Delete = %d, %v", n, err)
		}
		left, _ := bunadapter.Select(ctx, db, bunadapter.Filter{})
		if !slices.EqualFunc(left, lines[1001:], slices.Equal) {
			t.Errorf("%d lines left, want %d", len(left), len(lines)-1001)
		}
	})
}

func TestCasbinEnforcerThroughAdapter(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		m, err := model.NewModelFromString(rbacModel)
		if err != nil {
			t.Fatal(err)
		}
		e, err := casbin.NewEnforcer(m, bunadapter.New(db))
		if err != nil {
			t.Fatal(err)
		}
		// Auto-save writes through the adapter.
		if _, err := e.AddPolicies([][]string{{"admin", "d1", "doc", "read"}, {"admin", "d1", "doc", "write"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.AddGroupingPolicy("alice", "admin", "d1"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.UpdatePolicy([]string{"admin", "d1", "doc", "write"}, []string{"admin", "d1", "doc", "delete"}); err != nil {
			t.Fatal(err)
		}

		// A second enforcer sees exactly what was saved.
		e2, err := casbin.NewEnforcer(m.Copy(), bunadapter.New(db))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			act  string
			want bool
		}{{"read", true}, {"delete", true}, {"write", false}} {
			if ok, err := e2.Enforce("alice", "d1", "doc", c.act); err != nil || ok != c.want {
				t.Errorf("reloaded Enforce(alice, %s) = %v, %v; want %v", c.act, ok, err, c.want)
			}
		}
		if _, err := e.RemoveFilteredPolicy(0, "admin", "d1"); err != nil {
			t.Fatal(err)
		}
		if err := e2.LoadPolicy(); err != nil {
			t.Fatal(err)
		}
		if ok, _ := e2.Enforce("alice", "d1", "doc", "read"); ok {
			t.Error("filtered removal did not reach the database")
		}

		// SavePolicy replaces everything with the enforcer's memory.
		e.ClearPolicy()
		if _, err := e.AddPolicy("bob", "d2", "x", "read"); err != nil { // auto-saved
			t.Fatal(err)
		}
		e.ClearPolicy()
		e.GetModel().AddPolicy("p", "p", []string{"carol", "d3", "y", "read"})
		if err := e.SavePolicy(); err != nil {
			t.Fatal(err)
		}
		all, _ := bunadapter.Select(context.Background(), db, bunadapter.Filter{})
		if want := [][]string{{"p", "carol", "d3", "y", "read"}}; !equal(all, want) {
			t.Errorf("after SavePolicy = %q, want %q", all, want)
		}
	})
}

func TestAdapterJoinsTransaction(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		a := bunadapter.New(tx)
		if err := a.AddPolicies("p", "p", [][]string{{"a", "b", "c"}, {"d", "e", "f"}}); err != nil {
			t.Fatal(err)
		}
		if got, _ := bunadapter.Select(ctx, tx, bunadapter.Filter{}); len(got) != 2 {
			t.Fatalf("inside the transaction: %q", got)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if got, _ := bunadapter.Select(ctx, db, bunadapter.Filter{}); len(got) != 0 {
			t.Errorf("after rollback: %q, want nothing", got)
		}
		// A failing batch stores nothing of itself.
		err = bunadapter.New(db).AddPolicies("p", "p", [][]string{{"ok", "x", "y"}, {"1", "2", "3", "4", "5", "6", "7"}})
		if !errors.Is(err, bunadapter.ErrBadLine) {
			t.Fatalf("bad batch: %v", err)
		}
		if got, _ := bunadapter.Select(ctx, db, bunadapter.Filter{}); len(got) != 0 {
			t.Errorf("after a failed batch: %q, want nothing", got)
		}
	})
}
