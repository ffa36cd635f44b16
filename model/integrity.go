package model

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/uptrace/bun"
)

// States of an IntegrityRun.
const (
	IntegrityRunning = "running"
	IntegrityDone    = "done"
)

// IntegrityRun is one run of the scheduled integrity check. Runs live in
// the database so that instances sharing it take turns: one run at a
// time, resumed by another instance when the one working on it stops.
type IntegrityRun struct {
	bun.BaseModel `bun:"table:integrity_checks"`

	ID         string     `bun:"id,pk" json:"id"`
	StartedAt  time.Time  `bun:"started_at" json:"started_at"`
	FinishedAt *time.Time `bun:"finished_at" json:"finished_at"`
	State      string     `bun:"state" json:"state"`
	// Holder is the instance working on a running check, or the last one
	// that did.
	Holder       string `bun:"holder" json:"instance"`
	LeaseUntilMs int64  `bun:"lease_until_ms" json:"-"`
	ResumeAfter  string `bun:"resume_after" json:"-"`
	// Files and Bytes count what was checked (a resumed run may count a
	// few hundred files twice); Problems the damaged files found.
	Files    int64 `bun:"files" json:"files"`
	Bytes    int64 `bun:"bytes" json:"bytes"`
	Problems int64 `bun:"problems" json:"problems"`
	Changed  int64 `bun:"changed" json:"changed"`
	// Error says why a running check last paused ("unavailable",
	// "stopped"); empty once it is done.
	Error string `bun:"error" json:"error,omitempty"`
}

// IntegrityProblem is a damaged file a run found.
type IntegrityProblem struct {
	bun.BaseModel `bun:"table:integrity_problems"`

	CheckID  string    `bun:"check_id,pk" json:"-"`
	NodeID   string    `bun:"node_id,pk" json:"file_id"`
	Path     string    `bun:"path" json:"path"`
	BlobKey  string    `bun:"blob_key" json:"blob_key"`
	Kind     string    `bun:"kind" json:"kind"`
	Recorded string    `bun:"recorded" json:"recorded,omitempty"`
	Stored   string    `bun:"stored" json:"stored,omitempty"`
	Archived bool      `bun:"archived" json:"archived"`
	FoundAt  time.Time `bun:"found_at" json:"found_at"`
}

// ClaimIntegrityRun decides whether the instance holder should work on an
// integrity check now, and if so leases the run to it until now+lease. It
// takes over a running check whose lease ran out (to resume it), or starts
// a new one when none is running and the last one started at least every
// ago. It returns nil when there is nothing to do: a run is in another
// instance's hands, or the next one is not due. Two instances claiming at
// once get one run between them. It returns ErrUnavailable.
func (r *Repo) ClaimIntegrityRun(ctx context.Context, holder string, every, lease time.Duration, now time.Time) (*IntegrityRun, error) {
	running := new(IntegrityRun)
	err := r.db.NewSelect().Model(running).Where("state = ?", IntegrityRunning).Scan(ctx)
	switch {
	case err == nil:
		if running.LeaseUntilMs > now.UnixMilli() {
			return nil, nil
		}
		// Compare-and-set on the lease read: of two instances taking
		// over at once, one changes the row.
		res, err := r.db.NewUpdate().Model(running).
			Set("holder = ?", holder).Set("lease_until_ms = ?", now.Add(lease).UnixMilli()).
			Where("id = ? AND state = ? AND lease_until_ms = ?", running.ID, IntegrityRunning, running.LeaseUntilMs).
			Exec(ctx)
		if n, _ := rowsAffected(res, err); n != 1 {
			return nil, dbErr(err)
		}
		running.Holder, running.LeaseUntilMs = holder, now.Add(lease).UnixMilli()
		return running, nil
	case !errors.Is(dbErr(err), ErrNotFound):
		return nil, dbErr(err)
	}
	var last []time.Time
	if err := r.db.NewSelect().Table("integrity_checks").ColumnExpr("started_at").
		OrderExpr("started_at DESC").Limit(1).Scan(ctx, &last); err != nil {
		return nil, dbErr(err)
	}
	if len(last) == 1 && now.Sub(last[0]) < every {
		return nil, nil
	}
	run := &IntegrityRun{ID: NewID(), StartedAt: now.UTC().Truncate(time.Microsecond), State: IntegrityRunning,
		Holder: holder, LeaseUntilMs: now.Add(lease).UnixMilli()}
	if _, err := r.db.NewInsert().Model(run).Exec(ctx); err != nil {
		if isUniqueViolation(err) {
			return nil, nil // another instance started one just now
		}
		return nil, dbErr(err)
	}
	return run, nil
}

// RequestIntegrityRun starts a run now rather than when the schedule
// says: it adds a running run that no instance holds, which the next
// instance to look (within a minute, on any instance whose scheduled
// check is on) takes over. When a run is already under way it returns
// that run and ErrExists. It returns ErrUnavailable.
func (r *Repo) RequestIntegrityRun(ctx context.Context, now time.Time) (*IntegrityRun, error) {
	run := &IntegrityRun{ID: NewID(), StartedAt: now.UTC().Truncate(time.Microsecond), State: IntegrityRunning}
	if _, err := r.db.NewInsert().Model(run).Exec(ctx); err != nil {
		if !isUniqueViolation(err) {
			return nil, dbErr(err)
		}
		running := new(IntegrityRun)
		if err := r.db.NewSelect().Model(running).Where("state = ?", IntegrityRunning).Scan(ctx); err != nil {
			return nil, dbErr(err)
		}
		return running, fmt.Errorf("%w: integrity check %s is under way", ErrExists, running.ID)
	}
	return run, nil
}

func rowsAffected(res interface{ RowsAffected() (int64, error) }, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// saveIntegrityRun stores run's progress and extends its lease to
// leaseUntil, if holder still holds it; it returns ErrConflict when
// another instance took the run over, and ErrUnavailable.
func (r *Repo) saveIntegrityRun(ctx context.Context, run *IntegrityRun, leaseUntil time.Time) error {
	q := r.db.NewUpdate().Model(run).
		Column("resume_after", "files", "bytes", "changed", "state", "finished_at", "error").
		Set("lease_until_ms = ?", leaseUntil.UnixMilli()).
		Set("problems = (SELECT COUNT(*) FROM integrity_problems WHERE check_id = ?)", run.ID).
		Where("id = ? AND holder = ? AND state = ?", run.ID, run.Holder, IntegrityRunning)
	res, err := q.Exec(ctx)
	n, err := rowsAffected(res, err)
	if err != nil {
		return dbErr(err)
	}
	if n != 1 {
		return fmt.Errorf("%w: integrity check %s was taken over by another instance", ErrConflict, run.ID)
	}
	run.LeaseUntilMs = leaseUntil.UnixMilli()
	return nil
}

// recordIntegrityProblem keeps what a run found; a file found twice (a
// resumed run) keeps its first row.
func (r *Repo) recordIntegrityProblem(ctx context.Context, p *IntegrityProblem) error {
	_, err := r.db.NewInsert().Model(p).On("CONFLICT (check_id, node_id) DO NOTHING").Exec(ctx)
	return dbErr(err)
}

// IntegrityRuns returns the latest runs of the scheduled check, newest
// first, at most limit of them. It returns ErrUnavailable.
func (r *Repo) IntegrityRuns(ctx context.Context, limit int) ([]*IntegrityRun, error) {
	var runs []*IntegrityRun
	err := r.db.NewSelect().Model(&runs).OrderExpr("started_at DESC, id DESC").Limit(int64(limit)).Scan(ctx)
	return runs, dbErr(err)
}

// IntegrityRunByID returns a run and up to limit of the problems it
// found, in path order. It returns ErrNotFound and ErrUnavailable.
func (r *Repo) IntegrityRunByID(ctx context.Context, id string, limit int) (*IntegrityRun, []*IntegrityProblem, error) {
	run, err := r.integrityRun(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	probs := []*IntegrityProblem{}
	err = r.db.NewSelect().Model(&probs).Where("check_id = ?", id).OrderExpr("path, node_id").Limit(int64(limit)).Scan(ctx)
	return run, probs, dbErr(err)
}

func (r *Repo) integrityRun(ctx context.Context, id string) (*IntegrityRun, error) {
	run := new(IntegrityRun)
	if err := r.db.NewSelect().Model(run).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	return run, nil
}

// ScheduledCheck configures Store.CheckPeriodically.
type ScheduledCheck struct {
	// Every is how long after the last run started the next one starts.
	Every time.Duration
	// Workers and MaxRate are as in CheckOptions.
	Workers int
	MaxRate int64
	// Holder names this instance in the runs table (host and pid, say).
	Holder string
	// Lease is how long a run stays with an instance that stopped
	// renewing it, before another resumes it; 0 means 2 minutes. It is
	// renewed every third of it.
	Lease time.Duration
	// Poll is how often the loop looks whether a run is due or orphaned;
	// 0 means a minute, or Every when that is shorter.
	Poll time.Duration
	Log  *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (sc ScheduledCheck) withDefaults(s *Store) ScheduledCheck {
	if sc.Lease <= 0 {
		sc.Lease = 2 * time.Minute
	}
	if sc.Poll <= 0 {
		sc.Poll = time.Minute
		if sc.Every > 0 {
			sc.Poll = min(sc.Poll, sc.Every)
		}
	}
	if sc.Now == nil {
		sc.Now = time.Now
	}
	if sc.Log == nil {
		sc.Log = s.log
	}
	return sc
}

// CheckPeriodically runs the integrity check on schedule until ctx ends,
// taking turns with the other instances through the runs table: it
// starts a run when one is due, resumes one whose instance stopped, and
// records every damaged file it finds (also logged as an error). A run
// that cannot go on (the database or the blob store is down) is left to
// be resumed at the next look. It returns when ctx ends.
func (s *Store) CheckPeriodically(ctx context.Context, sc ScheduledCheck) {
	sc = sc.withDefaults(s)
	for {
		if _, err := s.CheckOnce(ctx, sc); err != nil && ctx.Err() == nil {
			sc.Log.Warn("integrity check", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(sc.Poll):
		}
	}
}

// CheckOnce does one look of CheckPeriodically: it claims a run if one is
// due or orphaned and works on it until it is done, ctx ends or the run
// is lost to another instance. It returns the run it worked on (nil when
// there was nothing to do) and the error that stopped it: ErrUnavailable,
// ErrConflict (taken over), or ctx's.
func (s *Store) CheckOnce(ctx context.Context, sc ScheduledCheck) (*IntegrityRun, error) {
	sc = sc.withDefaults(s)
	run, err := s.Repo.ClaimIntegrityRun(ctx, sc.Holder, sc.Every, sc.Lease, sc.Now())
	if err != nil || run == nil {
		return nil, err
	}
	log := sc.Log.With("check", run.ID)
	if run.ResumeAfter != "" || run.Files > 0 {
		log.Info("integrity check resumed", "files_so_far", run.Files)
	} else {
		log.Info("integrity check started")
	}
	base := *run // the counts of earlier sessions of this run

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex // guards run's progress fields
	progress := func(after string, sofar CheckReport) {
		mu.Lock()
		defer mu.Unlock()
		run.ResumeAfter = after
		run.Files, run.Bytes, run.Changed = base.Files+sofar.Files, base.Bytes+sofar.Bytes, base.Changed+sofar.Changed
	}
	save := func(ctx context.Context, leaseUntil time.Time) error {
		mu.Lock()
		snapshot := *run
		mu.Unlock()
		err := s.Repo.saveIntegrityRun(ctx, &snapshot, leaseUntil)
		run.LeaseUntilMs = snapshot.LeaseUntilMs
		return err
	}
	// The lease is renewed on a clock of its own: one file can take
	// longer to read than the lease lasts.
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(sc.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := save(ctx, sc.Now().Add(sc.Lease)); err != nil {
					cancel(err)
					return
				}
			}
		}
	}()
	rep, err := s.Check(ctx, CheckOptions{Workers: sc.Workers, MaxRate: sc.MaxRate, After: run.ResumeAfter, Progress: progress},
		func(p CheckProblem) {
			log.Error("integrity check: a file's stored bytes do not match its record", "path", p.Path, "file", p.NodeID,
				"blob", p.BlobKey, "problem", string(p.Kind), "recorded", p.Want, "stored", p.Got, "archived", p.Archived)
			ip := &IntegrityProblem{CheckID: run.ID, NodeID: p.NodeID, Path: p.Path, BlobKey: p.BlobKey, Kind: string(p.Kind),
				Recorded: p.Want, Stored: p.Got, Archived: p.Archived, FoundAt: sc.Now().UTC().Truncate(time.Microsecond)}
			if err := s.Repo.recordIntegrityProblem(ctx, ip); err != nil {
				cancel(err) // a finding that cannot be kept must not be lost: stop, resume later
			}
		})
	cancel(nil)
	<-renewed
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	end := context.WithoutCancel(ctx)
	if err != nil {
		if !errors.Is(err, ErrConflict) {
			// Hand the run on at once: this instance, or another, resumes
			// it from the last saved point at its next look.
			mu.Lock()
			run.Error = pauseReason(err)
			mu.Unlock()
			if serr := save(end, time.UnixMilli(0)); serr != nil {
				log.Warn("integrity check: saving progress", "err", serr)
			}
		}
		log.Warn("integrity check paused", "err", err, "files_so_far", run.Files)
		return run, err
	}
	mu.Lock()
	run.Files, run.Bytes, run.Changed = base.Files+rep.Files, base.Bytes+rep.Bytes, base.Changed+rep.Changed
	run.ResumeAfter, run.Error = "", ""
	run.State = IntegrityDone
	fin := sc.Now().UTC().Truncate(time.Microsecond)
	run.FinishedAt = &fin
	mu.Unlock()
	if err := save(end, time.UnixMilli(0)); err != nil {
		return run, err
	}
	// save counted the problems; read the row back for the count.
	if got, err := s.Repo.integrityRun(end, run.ID); err == nil {
		run = got
	}
	log.Info("integrity check finished", "files", run.Files, "bytes", run.Bytes, "problems", run.Problems, "changed", run.Changed)
	return run, nil
}

// pauseReason is the code a paused run keeps in its error column: the
// admin API shows it, so it names the cause, not the error's text.
func pauseReason(err error) string {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "stopped"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	}
	return "interrupted"
}
