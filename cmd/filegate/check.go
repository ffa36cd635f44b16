package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/filegate/filegate/model"
)

// errDamaged makes `filegate check` exit non-zero when it found problems.
type errDamaged int64

func (e errDamaged) Error() string {
	if e == 1 {
		return "1 file is damaged or missing"
	}
	return fmt.Sprintf("%d files are damaged or missing", int64(e))
}

// checkCmd runs `filegate check`: it reads back the stored bytes of every
// file and compares them with the size and SHA-256 recorded when they were
// written (see model.Store.Check). It is safe to run beside live servers:
// it only reads, and at --max-rate it leaves them the disk.
func checkCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", stderr)
	var sf storeFlags
	sf.register(fs)
	quick := fs.Bool("quick", envBool("check-quick", false),
		"compare sizes only, without reading the bytes: finds missing and truncated blobs, not altered ones [FILEGATE_CHECK_QUICK]")
	workers := fs.Int("workers", int(envInt64("check-workers", 2)), "files read at once [FILEGATE_CHECK_WORKERS]")
	rate := fs.String("max-rate", envString("check-max-rate", "none"),
		"most bytes read per second over all workers, e.g. 50MB or 200MiB; none for no cap [FILEGATE_CHECK_MAX_RATE]")
	under := fs.String("under", envString("check-under", ""), "check only this folder's subtree, e.g. /studies/2026 [FILEGATE_CHECK_UNDER]")
	asJSON := fs.Bool("json", envBool("check-json", false), "print one JSON object per problem and a summary object [FILEGATE_CHECK_JSON]")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("check takes no arguments, got %q", fs.Args())
	}
	maxRate, err := parseQuota(*rate)
	if err != nil {
		return fmt.Errorf("--max-rate: %w", err)
	}
	o, err := openForAdmin(ctx, &sf, stderr)
	if err != nil {
		return err
	}
	defer o.Close()
	enc := json.NewEncoder(stdout)
	rep, err := o.store.Check(ctx, model.CheckOptions{Workers: *workers, MaxRate: maxRate, Quick: *quick, Under: *under},
		func(p model.CheckProblem) {
			if *asJSON {
				enc.Encode(checkProblemJSON{Kind: string(p.Kind), Path: p.Path, NodeID: p.NodeID, BlobKey: p.BlobKey,
					Archived: p.Archived, Recorded: p.Want, Stored: p.Got})
				return
			}
			fmt.Fprintln(stdout, describeProblem(p))
		})
	if *asJSON {
		enc.Encode(struct {
			Summary checkSummaryJSON `json:"summary"`
		}{checkSummaryJSON{Files: rep.Files, Bytes: rep.Bytes, Problems: rep.Problems, Changed: rep.Changed,
			Seconds: rep.Elapsed.Seconds(), Complete: err == nil, Quick: *quick}})
	} else {
		fmt.Fprintln(stdout, describeReport(rep, *quick, err == nil))
	}
	if err != nil {
		return err
	}
	if rep.Problems > 0 {
		return errDamaged(rep.Problems)
	}
	return nil
}

type checkProblemJSON struct {
	Kind     string `json:"kind"`
	Path     string `json:"path"`
	NodeID   string `json:"node_id"`
	BlobKey  string `json:"blob_key"`
	Archived bool   `json:"archived"`
	Recorded string `json:"recorded,omitempty"`
	Stored   string `json:"stored,omitempty"`
}

type checkSummaryJSON struct {
	Files    int64   `json:"files"`
	Bytes    int64   `json:"bytes"`
	Problems int64   `json:"problems"`
	Changed  int64   `json:"changed"`
	Seconds  float64 `json:"seconds"`
	Complete bool    `json:"complete"`
	Quick    bool    `json:"quick"`
}

// describeProblem is one line per damaged file, the path first so that a
// list sorts and greps by it.
func describeProblem(p model.CheckProblem) string {
	where := fmt.Sprintf("(file %s, blob %s", p.NodeID, p.BlobKey)
	if p.Archived {
		where += ", archived"
	}
	where += ")"
	switch p.Kind {
	case model.CheckMissing:
		return fmt.Sprintf("%s: MISSING, no bytes are stored %s", p.Path, where)
	case model.CheckSize:
		return fmt.Sprintf("%s: SIZE, recorded %s bytes, stored %s %s", p.Path, p.Want, p.Got, where)
	case model.CheckSHA256:
		return fmt.Sprintf("%s: ALTERED, recorded SHA-256 %s, stored bytes hash to %s %s", p.Path, p.Want, p.Got, where)
	}
	return fmt.Sprintf("%s: UNREADABLE, %s %s", p.Path, p.Got, where)
}

func describeReport(r model.CheckReport, quick, complete bool) string {
	what := fmt.Sprintf("checked %d files", r.Files)
	if quick {
		what += " (sizes only)"
	} else {
		what += fmt.Sprintf(", read %s in %s (%s/s)", human(r.Bytes), r.Elapsed.Round(time.Millisecond),
			human(int64(float64(r.Bytes)/max(r.Elapsed.Seconds(), 1e-3))))
	}
	what += fmt.Sprintf(": %d damaged or missing", r.Problems)
	if r.Changed > 0 {
		what += fmt.Sprintf(", %d changed while being checked (not judged)", r.Changed)
	}
	if !complete {
		what += "; the check did not finish"
	}
	return what
}
