package model_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob/localblob"
	"github.com/filegate/filegate/model/blob/s3blob"
	"github.com/filegate/filegate/model/blob/s3test"
	"github.com/filegate/filegate/model/dbtest"
)

func localStore(t *testing.T, db *bun.DB) *model.Store {
	t.Helper()
	blobs, err := localblob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return model.NewStore(model.NewRepo(db), blobs, nil)
}

// Instances take turns through the runs table: one run at a time, a run
// whose instance stopped renewing its lease is taken over, and a new run
// starts only once the last one started a full interval ago.
func TestIntegrityRunsAreClaimedOneAtATime(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		repo := model.NewRepo(db)
		const every, lease = 24 * time.Hour, time.Minute
		t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

		// Eight instances look at once: one of them gets the run.
		var mu sync.Mutex
		var got []*model.IntegrityRun
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				run, err := repo.ClaimIntegrityRun(ctx, fmt.Sprintf("i%d", i), every, lease, t0)
				if err != nil {
					t.Error(err)
				}
				if run != nil {
					mu.Lock()
					got = append(got, run)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(got) != 1 {
			t.Fatalf("%d instances got a run, want 1", len(got))
		}
		first := got[0]

		if run, err := repo.ClaimIntegrityRun(ctx, "other", every, lease, t0.Add(30*time.Second)); run != nil || err != nil {
			t.Fatalf("claimed a leased run: %+v, %v", run, err)
		}
		// The holder goes quiet; once its lease is over another resumes.
		taken, err := repo.ClaimIntegrityRun(ctx, "other", every, lease, t0.Add(lease+time.Second))
		if err != nil || taken == nil || taken.ID != first.ID || taken.Holder != "other" {
			t.Fatalf("takeover: %+v, %v", taken, err)
		}
		// The old holder learns it lost the run when it next saves.
		if err := repo.SaveIntegrityRun(ctx, first, t0.Add(2*lease)); !errors.Is(err, model.ErrConflict) {
			t.Fatalf("old holder's save: %v, want ErrConflict", err)
		}
		// Finished: nothing is due until a day after it started.
		fin := t0.Add(time.Hour)
		taken.State, taken.FinishedAt = model.IntegrityDone, &fin
		if err := repo.SaveIntegrityRun(ctx, taken, time.UnixMilli(0)); err != nil {
			t.Fatal(err)
		}
		if run, err := repo.ClaimIntegrityRun(ctx, "i0", every, lease, t0.Add(23*time.Hour)); run != nil || err != nil {
			t.Fatalf("a run started before it was due: %+v, %v", run, err)
		}
		next, err := repo.ClaimIntegrityRun(ctx, "i0", every, lease, t0.Add(every))
		if err != nil || next == nil || next.ID == first.ID {
			t.Fatalf("the next day's run: %+v, %v", next, err)
		}
		runs, err := repo.IntegrityRuns(ctx, 10)
		if err != nil || len(runs) != 2 || runs[0].ID != next.ID || runs[1].State != model.IntegrityDone {
			t.Fatalf("runs: %+v, %v", runs, err)
		}
	})
}

// A scheduled run checks every file, records what it finds, and is done;
// the next look finds nothing due.
func TestScheduledCheckRecordsDamage(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		s := localStore(t, db)
		model.SetCheckPage(t, 3)
		var victim *model.Node
		for i := range 10 {
			n := putFile(t, s, fmt.Sprintf("/scans/s%02d.dcm", i), pattern(5000+i, byte(i)))
			if i == 6 {
				victim = n
			}
		}
		overwriteBlob(t, s, victim.BlobKey, pattern(5006, 99))
		sc := model.ScheduledCheck{Every: time.Hour, Holder: "a"}
		run, err := s.CheckOnce(ctx, sc)
		if err != nil || run == nil {
			t.Fatalf("run: %+v, %v", run, err)
		}
		if run.State != model.IntegrityDone || run.Files != 10 || run.Problems != 1 || run.FinishedAt == nil {
			t.Fatalf("finished run %+v", run)
		}
		got, probs, err := s.Repo.IntegrityRunByID(ctx, run.ID, 100)
		if err != nil || got.Problems != 1 || len(probs) != 1 {
			t.Fatalf("stored run %+v, problems %+v, %v", got, probs, err)
		}
		if p := probs[0]; p.Path != "/scans/s06.dcm" || p.Kind != string(model.CheckSHA256) || p.NodeID != victim.ID ||
			p.Recorded != sha(pattern(5006, 6)) || p.Stored != sha(pattern(5006, 99)) {
			t.Fatalf("problem %+v", p)
		}
		if again, err := s.CheckOnce(ctx, sc); again != nil || err != nil {
			t.Fatalf("a second run within the hour: %+v, %v", again, err)
		}
		if _, _, err := s.Repo.IntegrityRunByID(ctx, "nope", 10); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("unknown run: %v", err)
		}
	})
}

// A run whose instance died is resumed by another from the point it had
// saved: files before it are not read again, files after it are, and the
// counts carry on.
func TestScheduledCheckResumesWhereItStopped(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		s := localStore(t, db)
		var nodes []*model.Node
		for i := range 8 {
			nodes = append(nodes, putFile(t, s, fmt.Sprintf("/f%d", i), pattern(100, byte(i))))
		}
		sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
		// Damage one file on each side of the saved point.
		for _, n := range []*model.Node{nodes[1], nodes[6]} {
			if err := s.Blobs.Delete(ctx, n.BlobKey); err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now()
		dead, err := s.Repo.ClaimIntegrityRun(ctx, "dead", time.Hour, time.Minute, now.Add(-10*time.Minute))
		if err != nil || dead == nil {
			t.Fatal(dead, err)
		}
		dead.ResumeAfter, dead.Files, dead.Bytes = nodes[3].ID, 4, 400
		if err := s.Repo.SaveIntegrityRun(ctx, dead, now.Add(-9*time.Minute)); err != nil {
			t.Fatal(err)
		}
		run, err := s.CheckOnce(ctx, model.ScheduledCheck{Every: time.Hour, Holder: "heir", Lease: time.Minute})
		if err != nil || run == nil || run.ID != dead.ID {
			t.Fatalf("resumed run %+v, %v", run, err)
		}
		_, probs, err := s.Repo.IntegrityRunByID(ctx, run.ID, 10)
		if err != nil || len(probs) != 1 || probs[0].NodeID != nodes[6].ID {
			t.Fatalf("problems %+v, %v; want only the file after the saved point", probs, err)
		}
		if run.Files != 8 || run.Bytes != 4*100+3*100 || run.Holder != "heir" || run.State != model.IntegrityDone {
			t.Fatalf("resumed run %+v: want 8 files, 700 bytes read", run)
		}
	})
}

// A run stopped by its instance's shutdown hands the run on at once, with
// its progress saved, rather than holding it until the lease runs out.
func TestScheduledCheckHandsOnAtShutdown(t *testing.T) {
	db := dbtest.Open(t, dbtest.SQLite)
	s := localStore(t, db)
	model.SetCheckPage(t, 2)
	for i := range 8 {
		putFile(t, s, fmt.Sprintf("/f%d", i), pattern(64<<10, byte(i)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	// At 256 KiB/s the 512 KiB take two seconds at least: the cancel
	// cuts the run off after its first pages.
	time.AfterFunc(1200*time.Millisecond, cancel)
	run, err := s.CheckOnce(ctx, model.ScheduledCheck{Every: time.Hour, Holder: "a", MaxRate: 256 << 10, Workers: 1})
	if !errors.Is(err, context.Canceled) || run == nil {
		t.Fatalf("cut-off run %+v, %v", run, err)
	}
	next, err := s.Repo.ClaimIntegrityRun(context.Background(), "b", time.Hour, time.Minute, time.Now())
	if err != nil || next == nil || next.ID != run.ID || next.ResumeAfter == "" || next.State != model.IntegrityRunning || next.Error != "stopped" {
		t.Fatalf("after the shutdown another instance got %+v, %v; want the same run, with its progress", next, err)
	}
}

// A blob store that goes down says nothing about the bytes in it: the
// run pauses with "unavailable" and no finding, and once the store is
// back the next look resumes it and finds every file whole.
func TestScheduledCheckPausesWhileTheStoreIsDown(t *testing.T) {
	srv := s3test.StartT(t)
	s3test.SetEnv(t)
	blobs, err := s3blob.New(context.Background(), s3blob.Config{
		Bucket: srv.NewBucket(t), Prefix: "fg", Endpoint: srv.Endpoint, Region: s3test.Region, PathStyle: true,
		MaxAttempts: 2, MaxBackoff: 20 * time.Millisecond, DialTimeout: time.Second, ReadTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := model.NewStore(model.NewRepo(dbtest.Open(t, dbtest.SQLite)), blobs, nil)
	for i := range 5 {
		putFile(t, s, fmt.Sprintf("/f%d", i), pattern(2000, byte(i)))
	}
	sc := model.ScheduledCheck{Every: time.Hour, Holder: "a"}

	srv.Stop()
	run, err := s.CheckOnce(context.Background(), sc)
	if !errors.Is(err, model.ErrUnavailable) || run == nil {
		t.Fatalf("run with the store down: %+v, %v", run, err)
	}
	stored, probs, err := s.Repo.IntegrityRunByID(context.Background(), run.ID, 10)
	if err != nil || stored.State != model.IntegrityRunning || stored.Error != "unavailable" || len(probs) != 0 {
		t.Fatalf("paused run %+v, problems %+v, %v", stored, probs, err)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	again, err := s.CheckOnce(context.Background(), sc)
	if err != nil || again == nil || again.ID != run.ID || again.State != model.IntegrityDone || again.Files != 5 ||
		again.Problems != 0 || again.Error != "" {
		t.Fatalf("resumed run %+v, %v", again, err)
	}
}

// An admin's request starts a run now: the next instance to look takes it
// up though no run is due, and a second request while it is under way
// gets that run and ErrExists.
func TestRequestedIntegrityRun(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		s := localStore(t, db)
		putFile(t, s, "/a", []byte("a"))
		putFile(t, s, "/b", []byte("b"))
		sc := model.ScheduledCheck{Every: time.Hour, Holder: "a"}
		if first, err := s.CheckOnce(ctx, sc); err != nil || first == nil {
			t.Fatalf("first run: %+v, %v", first, err)
		}
		if none, err := s.CheckOnce(ctx, sc); none != nil || err != nil {
			t.Fatalf("a run before it was due: %+v, %v", none, err)
		}
		req, err := s.Repo.RequestIntegrityRun(ctx, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		dup, err := s.Repo.RequestIntegrityRun(ctx, time.Now())
		if !errors.Is(err, model.ErrExists) || dup == nil || dup.ID != req.ID {
			t.Fatalf("second request: %+v, %v", dup, err)
		}
		run, err := s.CheckOnce(ctx, sc)
		if err != nil || run == nil || run.ID != req.ID || run.State != model.IntegrityDone || run.Files != 2 || run.Holder != "a" {
			t.Fatalf("requested run: %+v, %v", run, err)
		}
	})
}
