package policy_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
	"github.com/filegate/filegate/policy/bunadapter"
)

// benchTree places file i at depth 4: root/d<i%100>/s<i%1000>/f<i>.
func fileLineage(i int) string {
	return fmt.Sprintf("root/d%d/s%d/f%d", i%100, i%1000, i)
}

// writePolicy streams a policy with one token grant per file and, when
// groupRules > 0, 1,000 users in three groups each and groupRules group
// rules, half direct p rules on folders and half g2 grants on folders.
func writePolicy(w io.Writer, tokens, groupRules int) {
	for i := range tokens {
		level := policy.LevelRead
		if i%2 == 1 {
			level = policy.LevelFull
		}
		fmt.Fprintf(w, "g2, token:tk%d, %s, f%d\n", i, level, i)
	}
	if groupRules == 0 {
		return
	}
	for u := range 1000 {
		for k := range 3 {
			fmt.Fprintf(w, "g, user:u%d, group:g%d\n", u, (u+k*67)%200)
		}
	}
	for j := range groupRules / 2 {
		fmt.Fprintf(w, "p, group:g%d, s%d, (read|write)\n", j%200, j%1000)
		fmt.Fprintf(w, "g2, group:g%d, level:read, s%d\n", (j+100)%200, (j+500)%1000)
	}
}

// loadPolicy imports the policy into a fresh SQLite database and returns
// an Authorizer on it.
func loadPolicy(b *testing.B, tokens, groupRules int) (*policy.Authorizer, *bun.DB) {
	b.Helper()
	ctx := context.Background()
	db := dbtest.Open(b, dbtest.SQLite)
	a := newAuthorizer(b, db)
	pr, pw := io.Pipe()
	go func() {
		writePolicy(pw, tokens, groupRules)
		pw.Close()
	}()
	start := time.Now()
	n, err := a.ImportCSV(ctx, pr, false)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("imported %d rules into SQLite and loaded them in %v", n, time.Since(start).Round(time.Millisecond))
	return a, db
}

type request struct{ sub, act, obj string }

func benchDecide(b *testing.B, a *policy.Authorizer, reqs []request, want bool) {
	ctx := context.Background()
	for _, r := range reqs {
		if a.Decide(ctx, r.sub, r.act, r.obj).Allowed != want {
			b.Fatalf("Decide(%v) != %v", r, want)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r := reqs[i%len(reqs)]
		a.Decide(ctx, r.sub, r.act, r.obj)
	}
}

func tokenRequests(tokens int, own bool) []request {
	reqs := make([]request, 1024)
	for k := range reqs {
		i := (k * 7919) % tokens
		file := i
		if !own {
			file = (i + 1) % tokens
		}
		reqs[k] = request{fmt.Sprintf("token:tk%d", i), "read", fileLineage(file)}
	}
	return reqs
}

// groupRequests asks, for users whose first group has a direct rule on
// folder s<j>, about a file in that folder (allowed) or delete (denied).
func groupRequests(allowed bool) []request {
	reqs := make([]request, 0, 1024)
	for u := 0; len(reqs) < cap(reqs); u = (u + 1) % 1000 {
		g := u % 200 // the user's first group; it has rules on s<g>, s<g+200>, ...
		file := g    // file g lives in folder s<g>
		act := "write"
		if !allowed {
			act = "delete"
		}
		reqs = append(reqs, request{fmt.Sprintf("user:u%d", u), act, fileLineage(file)})
	}
	return reqs
}

func BenchmarkDecide(b *testing.B) {
	for _, size := range []struct {
		name               string
		tokens, groupRules int
	}{
		{"grants=1k", 1000, 0},
		{"grants=100k", 100_000, 0},
		{"grants=100k+groupRules=10k", 100_000, 10_000},
	} {
		b.Run(size.name, func(b *testing.B) {
			a, _ := loadPolicy(b, size.tokens, size.groupRules)
			b.Run("token-allowed", func(b *testing.B) { benchDecide(b, a, tokenRequests(size.tokens, true), true) })
			b.Run("token-denied", func(b *testing.B) { benchDecide(b, a, tokenRequests(size.tokens, false), false) })
			b.Run("anonymous-denied", func(b *testing.B) {
				benchDecide(b, a, []request{{policy.Anonymous, "read", fileLineage(42)}}, false)
			})
			if size.groupRules > 0 {
				b.Run("user-via-group-allowed", func(b *testing.B) { benchDecide(b, a, groupRequests(true), true) })
				b.Run("user-via-group-denied", func(b *testing.B) { benchDecide(b, a, groupRequests(false), false) })
				b.Run("parallel-user-via-group", func(b *testing.B) {
					reqs := groupRequests(true)
					ctx := context.Background()
					b.ReportAllocs()
					b.RunParallel(func(pb *testing.PB) {
						for i := 0; pb.Next(); i++ {
							r := reqs[i%len(reqs)]
							a.Decide(ctx, r.sub, r.act, r.obj)
						}
					})
				})
				b.Run("explain-user-via-group", func(b *testing.B) {
					reqs := groupRequests(true)
					ctx := context.Background()
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						r := reqs[i%len(reqs)]
						if len(a.Explain(ctx, r.sub, r.act, r.obj).Via) == 0 {
							b.Fatal("no via")
						}
					}
				})
			}
		})
	}
}

// BenchmarkCasbinEnforcer is the generic Casbin enforcer on the same
// model, for comparison: it evaluates the matcher once per p line.
func BenchmarkCasbinEnforcer(b *testing.B) {
	for _, groupRules := range []int{0, 10_000} {
		b.Run(fmt.Sprintf("grants=1k+groupRules=%d", groupRules), func(b *testing.B) {
			ctx := context.Background()
			db := dbtest.Open(b, dbtest.SQLite)
			a := newAuthorizer(b, db)
			pr, pw := io.Pipe()
			go func() { writePolicy(pw, 1000, groupRules); pw.Close() }()
			if _, err := a.ImportCSV(ctx, pr, false); err != nil {
				b.Fatal(err)
			}
			e, err := policy.NewEnforcer(modelText(b), bunadapter.New(db))
			if err != nil {
				b.Fatal(err)
			}
			for _, own := range []bool{true, false} {
				b.Run(map[bool]string{true: "token-allowed", false: "token-denied"}[own], func(b *testing.B) {
					reqs := tokenRequests(1000, own)
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						r := reqs[i%len(reqs)]
						if ok, err := e.Enforce(r.sub, r.obj, r.act); ok != own || err != nil {
							b.Fatalf("Casbin: Enforce(%v) = %v, %v", r, ok, err)
						}
					}
				})
			}
		})
	}
}

// BenchmarkLoad measures New on 110,000 stored rules: one full load from
// SQLite into the index, what an instance does at start.
func BenchmarkLoad(b *testing.B) {
	_, db := loadPolicy(b, 100_000, 10_000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := policy.New(ctx, db, modelText(b), policy.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
