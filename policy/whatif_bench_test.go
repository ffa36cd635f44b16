package policy_test

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/migrations"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// loadSized imports writePolicy's policy into SQLite and returns the authorizer
// and the heap it holds (the in-memory index; the database is on disk).
func loadSized(b *testing.B, tokens, groupRules int) (*policy.Authorizer, float64) {
	b.Helper()
	ctx := context.Background()
	db := dbtest.Open(b, dbtest.SQLite)
	pr, pw := io.Pipe()
	go func() { writePolicy(pw, tokens, groupRules); pw.Close() }()
	seed := newAuthorizer(b, db)
	if _, err := seed.ImportCSV(ctx, pr, false); err != nil {
		b.Fatal(err)
	}
	seed = nil
	before := heapInUse()
	a, err := policy.New(ctx, db, modelText(b), policy.Options{})
	if err != nil {
		b.Fatal(err)
	}
	mb := float64(heapInUse()-before) / (1 << 20)
	runtime.KeepAlive(a)
	return a, mb
}

// BenchmarkDecisionPercentiles times decisions one by one and reports
// their p50 and p99 and the heap of the loaded policy, for 1,000 and for
// 100,000 token grants (one per file) with 10,000 group rules: the cost of
// a decision must not grow with the number of files.
func BenchmarkDecisionPercentiles(b *testing.B) {
	for _, size := range []struct {
		name               string
		tokens, groupRules int
	}{
		{"grants=1k+groupRules=10k", 1000, 10_000},
		{"grants=100k+groupRules=10k", 100_000, 10_000},
	} {
		b.Run(size.name, func(b *testing.B) {
			a, mb := loadSized(b, size.tokens, size.groupRules)
			ctx := context.Background()
			// A mix: tokens on their own file (allowed) and on another
			// (denied), users through a group (allowed and denied).
			var reqs [][3]string
			for k := range 1024 {
				i := (k * 7919) % size.tokens
				reqs = append(reqs,
					[3]string{fmt.Sprintf("token:tk%d", i), "read", fileLineage(i)},
					[3]string{fmt.Sprintf("token:tk%d", i), "read", fileLineage((i + 1) % size.tokens)},
					[3]string{fmt.Sprintf("user:u%d", k%1000), "write", fileLineage(k % 200)},
					[3]string{fmt.Sprintf("user:u%d", k%1000), "delete", fileLineage(k % 200)})
			}
			if !a.Decide(ctx, reqs[0][0], reqs[0][1], reqs[0][2]).Allowed || a.Decide(ctx, reqs[1][0], reqs[1][1], reqs[1][2]).Allowed {
				b.Fatal("the benchmark's requests do not decide as designed")
			}
			samples := make([]time.Duration, 0, 1<<20)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				r := reqs[i%len(reqs)]
				start := time.Now()
				a.Decide(ctx, r[0], r[1], r[2])
				if len(samples) < cap(samples) {
					samples = append(samples, time.Since(start))
				}
			}
			b.StopTimer()
			slices.Sort(samples)
			b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
			b.ReportMetric(mb, "policy-heap-MB")
		})
	}
}

// BenchmarkWhatIf measures a what-if over 110,000 stored rules: copying
// the index and deciding 5,000 queries twice.
func BenchmarkWhatIf(b *testing.B) {
	a, _ := loadSized(b, 100_000, 10_000)
	ctx := context.Background()
	ch := policy.Change{Add: [][]string{policy.Grant("group:g1", policy.LevelRead, "s7")}}
	var qs []policy.Query
	for u := range 1000 {
		for _, act := range []string{"stat", "read", "write", "delete", "share"} {
			qs = append(qs, policy.Query{Subject: fmt.Sprintf("user:u%d", u), Action: act, Object: fileLineage(7)})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		diffs, err := a.WhatIf(ctx, ch, qs)
		if err != nil || len(diffs) == 0 {
			b.Fatalf("WhatIf: %d diffs, %v", len(diffs), err)
		}
	}
}

// BenchmarkPolicyPropagation measures how long a change applied by one
// instance takes to show in another instance's decisions on PostgreSQL,
// each with its own pool and Run following changes (LISTEN/NOTIFY, with
// the default 250 ms polling as the fallback).
func BenchmarkPolicyPropagation(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := dbtest.URL(b, dbtest.Postgres)
	dbs := [2]*policy.Authorizer{}
	for i := range dbs {
		db := openURL(b, url)
		var err error
		if dbs[i], err = policy.New(ctx, db, modelText(b), policy.Options{}); err != nil {
			b.Fatal(err)
		}
		go dbs[i].Run(ctx)
	}
	a, other := dbs[0], dbs[1]
	var worst time.Duration
	var total time.Duration
	n := 0
	for i := 0; b.Loop(); i++ {
		line := policy.Grant("user:bench", policy.LevelRead, fmt.Sprintf("n%d", i))
		start := time.Now()
		if err := a.Apply(ctx, policy.Change{Add: [][]string{line}}); err != nil {
			b.Fatal(err)
		}
		for !other.Decide(ctx, "user:bench", "read", "root/"+line[3]).Allowed {
			if time.Since(start) > 10*time.Second {
				b.Fatal("the change never reached the other instance")
			}
			time.Sleep(200 * time.Microsecond)
		}
		d := time.Since(start)
		total += d
		worst = max(worst, d)
		n++
	}
	b.ReportMetric(float64(total.Microseconds())/float64(n)/1000, "mean-ms")
	b.ReportMetric(float64(worst.Microseconds())/1000, "max-ms")
}

// openURL opens and migrates a database by URL, closed when tb ends.
func openURL(tb testing.TB, url string) *bun.DB {
	tb.Helper()
	db, err := model.OpenDB(context.Background(), model.DBOptions{URL: url})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if _, err := migrations.Up(context.Background(), db); err != nil {
		tb.Fatal(err)
	}
	return db
}
