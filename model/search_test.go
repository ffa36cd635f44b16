package model_test

import (
	"context"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

func names(nodes []*model.Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Name
	}
	return out
}

func TestSearchNodes(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		repo := model.NewRepo(db)
		n := tree(t, repo, "/a/", "/a/f1", "/a/f2", "/a/sub/", "/a/sub/f3", "/a-b/", "/a-b/f4", "/c/", "/c/f5")

		t.Run("within a subtree only, /a not covering /a-b", func(t *testing.T) {
			got, err := repo.SearchNodes(ctx, model.Search{Within: []string{n["/a"].Lineage, n["/a/sub"].Lineage},
				Order: []model.SearchOrder{{Expr: "n.name"}}})
			if err != nil {
				t.Fatal(err)
			}
			if want := "f1 f2 f3"; join(names(got)) != want {
				t.Fatalf("got %q, want %q", join(names(got)), want)
			}
			none, err := repo.SearchNodes(ctx, model.Search{Within: []string{}})
			if err != nil || len(none) != 0 {
				t.Fatalf("empty scope: %v, %v", names(none), err)
			}
		})

		t.Run("keyset pages in both directions", func(t *testing.T) {
			for _, desc := range []bool{false, true} {
				order := []model.SearchOrder{{Expr: "n.name", Desc: desc}}
				var all []string
				var after []any
				for page := 0; page < 10; page++ {
					got, err := repo.SearchNodes(ctx, model.Search{Order: order, After: after, Limit: 2})
					if err != nil {
						t.Fatal(err)
					}
					if len(got) == 0 {
						break
					}
					all = append(all, names(got)...)
					last := got[len(got)-1]
					after = []any{last.Name, last.ID}
				}
				want := "f1 f2 f3 f4 f5"
				if desc {
					want = "f5 f4 f3 f2 f1"
				}
				if join(all) != want {
					t.Fatalf("desc=%v: pages gave %q, want %q", desc, join(all), want)
				}
			}
		})

		t.Run("condition, archived and folders", func(t *testing.T) {
			if _, err := repo.Archive(ctx, n["/c/f5"].ID); err != nil {
				t.Fatal(err)
			}
			got, err := repo.SearchNodes(ctx, model.Search{Where: "EXISTS (SELECT 1 FROM json_each(n.tags) WHERE json_each.value = ?)",
				Args: []any{"ecg"}, Order: []model.SearchOrder{{Expr: "n.name"}}})
			if model.IsPostgres(db) {
				got, err = repo.SearchNodes(ctx, model.Search{Where: "(n.tags)::jsonb @> jsonb_build_array(CAST(? AS text))",
					Args: []any{"ecg"}, Order: []model.SearchOrder{{Expr: "n.name"}}})
			}
			if err != nil || join(names(got)) != "f1 f2 f3 f4" {
				t.Fatalf("tag search: %q, %v", join(names(got)), err)
			}
			arch, err := repo.SearchNodes(ctx, model.Search{Archived: true, Where: "n.archived_at IS NOT NULL"})
			if err != nil || join(names(arch)) != "f5" {
				t.Fatalf("archived: %q, %v", join(names(arch)), err)
			}
			kids, err := repo.SearchNodes(ctx, model.Search{Folders: true, ParentID: n["/a"].ID, Order: []model.SearchOrder{{Expr: "n.name"}}})
			if err != nil || join(names(kids)) != "f1 f2 sub" {
				t.Fatalf("children: %q, %v", join(names(kids)), err)
			}
		})

		t.Run("lineages of ids", func(t *testing.T) {
			m, err := repo.LineagesOf(ctx, []string{n["/a"].ID, "nope"})
			if err != nil || len(m) != 1 || m[n["/a"].ID] != n["/a"].Lineage {
				t.Fatalf("LineagesOf = %v, %v", m, err)
			}
		})
	})
}

func join(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += " "
		}
		out += s
	}
	return out
}
