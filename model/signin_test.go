package model_test

import (
	"context"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

// TestSignInFailuresBlock checks the sign-in failure counts on both
// databases: a key is blocked once it reaches its limit, each further
// failure doubles the block up to the cap, a quiet spell starts the count
// again, a success clears the account but not the address, and forgotten
// keys are pruned.
func TestSignInFailuresBlock(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		r := model.NewRepo(db)
		lim := model.SignInLimits{PerAccount: 3, PerAddress: 5, Block: time.Minute, MaxBlock: 4 * time.Minute, Forget: time.Hour}
		t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
		acct, addr := model.SignInKeys("Nurse.Jo", "192.0.2.7")
		if other, _ := model.SignInKeys("nurse.jo", ""); other != acct {
			t.Fatalf("account keys differ by case: %q, %q", acct, other)
		}
		fail := func(at time.Time, account, address string) time.Time {
			t.Helper()
			until, err := r.SignInFailed(ctx, lim, at, account, address)
			if err != nil {
				t.Fatal(err)
			}
			return until
		}
		blocked := func(at time.Time, keys ...string) time.Time {
			t.Helper()
			until, err := r.SignInBlockedUntil(ctx, at, keys...)
			if err != nil {
				t.Fatal(err)
			}
			return until
		}

		for i := range 2 {
			if u := fail(t0.Add(time.Duration(i)*time.Second), acct, addr); !u.IsZero() {
				t.Fatalf("failure %d blocked until %v; the limit is 3", i+1, u)
			}
		}
		if u := blocked(t0.Add(2*time.Second), acct, addr); !u.IsZero() {
			t.Fatalf("blocked until %v after 2 failures", u)
		}
		at := t0.Add(3 * time.Second)
		if u := fail(at, acct, addr); !u.Equal(at.Add(time.Minute)) {
			t.Fatalf("third failure blocks until %v, want %v", u, at.Add(time.Minute))
		}
		if u := blocked(at.Add(30*time.Second), acct); !u.Equal(at.Add(time.Minute)) {
			t.Fatalf("account blocked until %v, want %v", u, at.Add(time.Minute))
		}
		if u := blocked(at.Add(61*time.Second), acct, addr); !u.IsZero() {
			t.Fatalf("still blocked until %v after the block ended", u)
		}
		// Each further failure doubles the block, up to MaxBlock.
		for i, want := range []time.Duration{2 * time.Minute, 4 * time.Minute, 4 * time.Minute} {
			at = t0.Add(time.Duration(2+i) * time.Minute)
			if u := fail(at, acct, ""); !u.Equal(at.Add(want)) {
				t.Fatalf("failure %d blocks until %v, want %v later", 4+i, u, want)
			}
		}

		// Another name from the same address: the address reaches 4 of
		// its 5, the new name 1 of its 3; the fifth blocks the address.
		other, _ := model.SignInKeys("ward.clerk", "")
		if u := fail(t0.Add(10*time.Minute), other, addr); !u.IsZero() {
			t.Fatalf("the address's 4th failure blocks until %v; its limit is 5", u)
		}
		if u := fail(t0.Add(10*time.Minute+time.Second), "", addr); u.IsZero() {
			t.Fatal("address not blocked at its 5th failure")
		}
		if u := blocked(t0.Add(10*time.Minute+2*time.Second), other); !u.IsZero() {
			t.Fatalf("the other name is blocked until %v with 1 of its 3 failures", u)
		}

		// A success clears the account, not the address.
		if err := r.SignInSucceeded(ctx, acct); err != nil {
			t.Fatal(err)
		}
		at = t0.Add(20 * time.Minute)
		if u := blocked(at, acct); !u.IsZero() {
			t.Fatalf("account blocked until %v after a success", u)
		}
		if u := fail(at, acct, ""); !u.IsZero() {
			t.Fatalf("first failure after a success blocks until %v", u)
		}

		// After a quiet hour the count starts again, and keys whose
		// failures are forgotten and whose block is over are pruned.
		late := t0.Add(3 * time.Hour)
		if u := fail(late, other, ""); !u.IsZero() {
			t.Fatalf("a failure after a quiet hour blocks until %v", u)
		}
		var keys []string
		if err := db.NewSelect().Table("sign_in_failures").Column("key").Order("key").Scan(ctx, &keys); err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0] != other {
			t.Fatalf("keys kept after pruning: %q, want only %q", keys, other)
		}
	})
}
