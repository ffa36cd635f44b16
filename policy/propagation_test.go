package policy_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

// run starts a's watcher for the rest of the test.
func run(t *testing.T, a *policy.Authorizer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestChangesPropagateToOtherInstances(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			ctx := context.Background()
			db1, db2 := openTwice(t, kind)
			a, b := newAuthorizer(t, db1), newAuthorizer(t, db2)
			run(t, a)
			run(t, b)
			allowed := func(az *policy.Authorizer, sub, act, obj string) func() bool {
				return func() bool { return az.Decide(ctx, sub, act, obj).Allowed }
			}
			denied := func(az *policy.Authorizer, sub, act, obj string) func() bool {
				return func() bool { return !az.Decide(ctx, sub, act, obj).Allowed }
			}

			grant := policy.Grant("token:t", policy.LevelFull, "ab12")
			apply(t, a, add(grant))
			eventually(t, "a grant made on A reaching B", allowed(b, "token:t", "write", fileA))

			apply(t, b, policy.Change{Remove: [][]string{grant}})
			eventually(t, "a removal made on B reaching A", denied(a, "token:t", "write", fileA))

			// A short-lived tool (like `filegate policy add`) writes through
			// its own Authorizer and exits without running a watcher.
			tool := newAuthorizer(t, db2)
			apply(t, tool, add(policy.Membership("user:eve", policy.AdminRole)))
			eventually(t, "a tool's change reaching A", allowed(a, "user:eve", "admin", "*"))
			eventually(t, "a tool's change reaching B", allowed(b, "user:eve", "admin", "*"))

			// A change committed in a caller's transaction whose commit
			// callback is never run still reaches the writer itself.
			if _, err := a.ApplyTx(ctx, db1, add(policy.Grant(policy.Anyone, policy.LevelRead, "f1"))); err != nil {
				t.Fatal(err)
			}
			eventually(t, "an uncommitted-callback change reaching A", allowed(a, policy.Anonymous, "read", fileA))
			eventually(t, "the same change reaching B", allowed(b, policy.Anonymous, "read", fileA))

			// An import replaces the policy; other instances reload it whole.
			var csv bytes.Buffer
			if err := a.ExportCSV(ctx, &csv); err != nil {
				t.Fatal(err)
			}
			imported := strings.ReplaceAll(csv.String(), "user:eve", "user:frank")
			if _, err := a.ImportCSV(ctx, strings.NewReader(imported), true); err != nil {
				t.Fatal(err)
			}
			eventually(t, "an import reaching B", allowed(b, "user:frank", "admin", "*"))
			eventually(t, "an import's removals reaching B", denied(b, "user:eve", "admin", "*"))
			if a.Revision() != b.Revision() {
				eventually(t, "B catching up with A's revision", func() bool { return a.Revision() == b.Revision() })
			}
		})
	}
}

func TestPostgresNotifyWithoutPolling(t *testing.T) {
	ctx := context.Background()
	db1, db2 := openTwice(t, dbtest.Postgres)
	a := newAuthorizer(t, db1)
	// B would not poll for an hour: only the NOTIFY can tell it.
	b, err := policy.New(ctx, db2, modelText(t), policy.Options{PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	run(t, b)
	// The listener may still be connecting when the first change is sent,
	// so keep making changes until one is heard.
	for i := 0; ; i++ {
		tok := policy.Token(fmt.Sprintf("n%d", i))
		apply(t, a, add(policy.Grant(tok, policy.LevelRead, "f1")))
		heard := false
		for range 50 {
			if b.Decide(ctx, tok, "read", fileA).Allowed {
				heard = true
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if heard {
			break
		}
		if i == 10 {
			t.Fatal("B never heard a change through LISTEN/NOTIFY")
		}
	}
}

func TestManyChangesConverge(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db1 *bun.DB) {
		ctx := context.Background()
		// Both writers and a reader share the database.
		a, b, r := newAuthorizer(t, db1), newAuthorizer(t, db1), newAuthorizer(t, db1)
		run(t, a)
		run(t, b)
		run(t, r)
		var wg sync.WaitGroup
		for w, az := range []*policy.Authorizer{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 40 {
					tok := policy.Token(fmt.Sprintf("w%d-%d", w, i))
					if err := az.Apply(ctx, add(policy.Grant(tok, policy.LevelRead, "f1"))); err != nil {
						t.Error(err)
						return
					}
					if i%3 == 0 {
						if err := az.Apply(ctx, policy.Change{Remove: [][]string{policy.Grant(tok, policy.LevelRead, "f1")}}); err != nil {
							t.Error(err)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		want, err := a.Rules(ctx, policy.Filter{Ptype: "g2"})
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != 2*26 {
			t.Fatalf("stored grants = %d, want %d", len(want), 2*26)
		}
		for _, az := range []*policy.Authorizer{a, b, r} {
			eventually(t, "every instance matching the database", func() bool {
				for w := range 2 {
					for i := range 40 {
						tok := policy.Token(fmt.Sprintf("w%d-%d", w, i))
						if az.Decide(ctx, tok, "read", fileA).Allowed != (i%3 != 0) {
							return false
						}
					}
				}
				return true
			})
		}
	})
}

func TestDecideDuringChanges(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		a := newAuthorizer(t, db)
		apply(t, a, add(policy.Membership("user:alice", "group:staff"), policy.Grant("group:staff", policy.LevelRead, "ab12")))
		run(t, a)
		stop := make(chan struct{})
		var wrong atomic.Int64
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					// alice's access never changes while tokens come and go.
					if !a.Decide(ctx, "user:alice", "read", fileA).Allowed || a.Decide(ctx, "user:alice", "write", fileA).Allowed {
						wrong.Add(1)
					}
					_ = a.Explain(ctx, "token:t3", "read", fileA)
				}
			}()
		}
		for i := range 30 {
			tok := policy.Token(fmt.Sprintf("t%d", i))
			apply(t, a, add(policy.Grant(tok, policy.LevelFull, "f1")))
			if !a.Decide(ctx, tok, "write", fileA).Allowed {
				t.Errorf("%s: grant not visible to the next Decide", tok)
			}
		}
		close(stop)
		wg.Wait()
		if n := wrong.Load(); n != 0 {
			t.Errorf("%d decisions about an unchanged grant were wrong during changes", n)
		}
	})
}

func TestCSVRoundTrip(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		a := newAuthorizer(t, db)
		lines := [][]string{
			policy.Membership("user:alice", "group:staff"),
			policy.Membership("user:bob", policy.AdminRole),
			policy.Grant("group:staff", policy.LevelRead, "ab12"),
			policy.Grant("token:t", policy.LevelFull, "f1"),
			policy.Grant(policy.Anyone, policy.LevelMetadata, "f2"),
			policy.Allow("group:staff", "ab12", "(read|write)"),
		}
		apply(t, a, add(lines...))
		var buf bytes.Buffer
		if err := a.ExportCSV(ctx, &buf); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "p, level:read, *, (stat|read)\n") ||
			!strings.Contains(buf.String(), "g2, token:t, level:full, f1\n") {
			t.Fatalf("export is not in Casbin's format:\n%s", buf.String())
		}
		exported := buf.String()

		other := dbtest.Open(t, dbtest.Kinds[0])
		b := newAuthorizer(t, other)
		n, err := b.ImportCSV(ctx, strings.NewReader("# exported\n\n"+exported), true)
		if err != nil {
			t.Fatal(err)
		}
		if n != len(lines)+len(policy.Builtin()) {
			t.Errorf("imported %d lines, want %d", n, len(lines)+len(policy.Builtin()))
		}
		got, _ := b.Rules(ctx, policy.Filter{})
		want, _ := a.Rules(ctx, policy.Filter{})
		if !slices.EqualFunc(sortedLines(got), sortedLines(want), slices.Equal) {
			t.Errorf("after round trip:\n%q\nwant\n%q", got, want)
		}
		expect(t, b, []check{
			{"user:alice", "write", fileA, true},
			{"token:t", "delete", fileA, true},
			{policy.Anonymous, "stat", prefixSib, false},
			{policy.Anonymous, "stat", prefixF, true},
			{policy.Anonymous, "read", prefixF, false},
			{"user:bob", "admin", "*", true},
		})

		// A bad line rejects the whole import and keeps the old policy.
		rev := b.Revision()
		_, err = b.ImportCSV(ctx, strings.NewReader("g, user:zed, group:staff\ng2, token:q, level:owner, f1\n"), true)
		if !isInvalid(err) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("bad import: %v, want ErrInvalid naming line 2", err)
		}
		if again, _ := b.Rules(ctx, policy.Filter{}); len(again) != len(got) || b.Revision() != rev {
			t.Errorf("a rejected import changed the policy")
		}
		// Merging keeps what is there.
		if _, err := b.ImportCSV(ctx, strings.NewReader("g, user:zed, group:staff\n"), false); err != nil {
			t.Fatal(err)
		}
		expect(t, b, []check{{"user:zed", "read", fileA, true}, {"user:bob", "admin", "*", true}})
	})
}
