package soak

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob"
)

// finalState checks, with both instances up, that each client's folder
// lists exactly the files the client believes it holds and that each
// reads back with the SHA-256 the client wrote, through WebDAV and (for
// files with a known id) the files API's metadata.
func finalState(t *testing.T, clients []*client) (files int) {
	for _, c := range clients {
		names := map[string]bool{}
		body := `<?xml version="1.0"?><propfind xmlns="DAV:"><prop><resourcetype/></prop></propfind>`
		err := c.do(req{kind: "dav PROPFIND", door: "dav",
			build: func(base string) (*http.Request, error) {
				r, err := http.NewRequest("PROPFIND", base+"/dav/"+c.acct.name+"/", strings.NewReader(body))
				if err == nil {
					r.Header.Set("Depth", "1")
				}
				return r, err
			},
			handle: func(resp *http.Response, _ bool) error {
				if err := want(resp, "final PROPFIND", http.StatusMultiStatus); err != nil {
					return err
				}
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					return fmt.Errorf("%w: %v", errRetry, err)
				}
				prefix := "/dav/" + c.acct.name + "/"
				for _, part := range strings.Split(string(b), "<D:href>")[1:] {
					href, _, _ := strings.Cut(part, "</D:href>")
					if i := strings.Index(href, prefix); i >= 0 {
						if name := strings.TrimSuffix(href[i+len(prefix):], "/"); name != "" {
							names[name] = true
						}
					}
				}
				return nil
			}})
		if err != nil {
			t.Errorf("client %d: %v", c.id, err)
			continue
		}
		for name := range c.files {
			if !names[name] {
				c.h.n.mismatches.Add(1)
				t.Errorf("client %d: %s is missing from the final listing", c.id, name)
			}
		}
		for name := range names {
			if c.files[name] == nil {
				c.h.n.mismatches.Add(1)
				t.Errorf("client %d: the final listing has %s, which the client never wrote or deleted", c.id, name)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(c.files)) {
			files++
			c.prefer = files % 2
			if err := c.readBack(name); err != nil {
				t.Errorf("client %d: final read of %s: %v", c.id, name, err)
			}
		}
	}
	return files
}

// readBack reads a file through WebDAV, and its metadata through the API
// when its id is known, comparing both with what was written.
func (c *client) readBack(name string) error {
	f := c.files[name]
	err := c.do(req{kind: "dav GET", door: "dav",
		build: func(base string) (*http.Request, error) {
			return http.NewRequest(http.MethodGet, c.davURL(base, name), nil)
		},
		handle: func(resp *http.Response, _ bool) error {
			if err := want(resp, "final GET", http.StatusOK); err != nil {
				return err
			}
			sum, err := readSum(resp)
			if err == nil {
				c.verify("final GET", name, sum)
			}
			return err
		}})
	if err != nil || f.id == "" {
		return err
	}
	c.prefer = 1 - c.prefer
	return c.metaOf(name)
}

// blobReport is the blob folder compared with the nodes table.
type blobReport struct {
	rows           int // nodes with content (live and archived)
	blobs          int // committed blobs before the sweep
	rowsNoBlob     int // rows whose blob is missing: lost bytes
	blobSumDiffers int // blobs whose SHA-256 differs from their row's
	damaged        int // files Store.Check found damaged, reading every byte
	orphansBefore  int // committed blobs no row refers to, before the sweep
	tmpLeftovers   int // uncommitted writer files before the sweep
	swept          int // what SweepOrphans removed
	orphansAfter   int // committed blobs no row refers to, after the sweep
	partials       int // partial uploads (unfinished tus sessions)
	partialNoRow   int // partial uploads without a session row
	openSessions   int // tus sessions not completed
}

// checkBlobs compares the blob store with the nodes table, runs the
// orphan sweep, and compares again. Instances must be stopped. In a local
// blob folder (dir) it also counts writer leftovers and partial uploads.
func checkBlobs(t *testing.T, ctx context.Context, db *bun.DB, store blob.Store, dir string) blobReport {
	var rep blobReport
	type row struct {
		BlobKey string `bun:"blob_key"`
		SHA256  string `bun:"sha256"`
	}
	var rows []row
	if err := db.NewSelect().Table("nodes").Column("blob_key", "sha256").Where("blob_key <> ''").Scan(ctx, &rows); err != nil {
		t.Fatal(err)
	}
	rep.rows = len(rows)
	walk := func() map[string]blob.Info {
		m := map[string]blob.Info{}
		if err := store.Walk(ctx, func(key string, info blob.Info) error { m[key] = info; return nil }); err != nil {
			t.Fatal(err)
		}
		return m
	}
	orphans := func(blobs map[string]blob.Info) int {
		used := map[string]bool{}
		for _, r := range rows {
			used[r.BlobKey] = true
		}
		n := 0
		for k := range blobs {
			if !used[k] {
				n++
			}
		}
		return n
	}
	blobs := walk()
	rep.blobs = len(blobs)
	for _, r := range rows {
		info, ok := blobs[r.BlobKey]
		switch {
		case !ok:
			rep.rowsNoBlob++
			t.Errorf("node row refers to blob %s, which is missing", r.BlobKey)
		case info.SHA256 != r.SHA256:
			rep.blobSumDiffers++
			t.Errorf("blob %s has sha256 %s, its row says %s", r.BlobKey, info.SHA256, r.SHA256)
		}
	}
	rep.orphansBefore = orphans(blobs)
	rep.tmpLeftovers = -1
	if dir != "" {
		rep.tmpLeftovers = countDir(filepath.Join(dir, "tmp"))
	}

	var open []string
	if err := db.NewSelect().Table("upload_sessions").Column("id").Where("status <> 'completed'").Scan(ctx, &open); err != nil && err != sql.ErrNoRows {
		t.Fatal(err)
	}
	rep.openSessions = len(open)
	rep.partials = -1
	if dir != "" {
		entries, _ := os.ReadDir(filepath.Join(dir, "partial", "data"))
		rep.partials = len(entries)
		for _, e := range entries {
			if !slices.Contains(open, e.Name()) {
				rep.partialNoRow++
			}
		}
	}

	// The stored sums above are what the store says; this reads every
	// byte back, as the scheduled integrity check does.
	st := model.NewStore(model.NewRepo(db), store, nil)
	if _, err := st.Check(ctx, model.CheckOptions{}, func(p model.CheckProblem) {
		rep.damaged++
		t.Errorf("integrity check: %s is %s (recorded %s, stored %s)", p.Path, p.Kind, p.Want, p.Got)
	}); err != nil {
		t.Fatal(err)
	}
	var err error
	rep.swept, err = st.SweepOrphans(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	after := walk()
	rep.orphansAfter = orphans(after)
	for _, r := range rows {
		if _, ok := after[r.BlobKey]; !ok {
			t.Errorf("the sweep removed blob %s, which a row refers to", r.BlobKey)
			rep.rowsNoBlob++
		}
	}
	return rep
}

func countDir(dir string) int {
	entries, _ := os.ReadDir(dir)
	return len(entries)
}

// auditReport compares the audit trail with the requests the clients sent.
type auditReport struct {
	rows int // audit rows in the table
	// ok2xx are the answered 2xx attempts of audited kinds: each passed
	// the authorizer. rows2xx are their audit rows, and want2xx the rows
	// their kinds should leave (one per authorization decision).
	ok2xx, rows2xx, want2xx int
	// kinds maps "kind status" to a histogram of rows per attempt.
	kinds      map[string]map[int]int
	dropped    map[int]int // rows per attempt the killed instance dropped
	unaudited  int         // answered 2xx attempts with fewer rows than decisions
	wrongRows  int         // rows whose door, subject or decision disagree with the attempt
	foreignIDs int         // rows with a request id no client sent
	chainOK    bool
}

// decisions is how many authorization decisions (and so audit rows) a
// request kind that succeeds makes, where it is not one. A WebDAV MOVE
// decides on two objects: delete on the source and write on the
// destination folder. A tus HEAD makes none: it only reports an upload's
// offset to its owner.
//
// The admin API's reads and the admin page's sign-out leave one row each
// (door "admin"), like every other request.
var decisions = map[string]int{"dav MOVE": 2, "tus HEAD": 0}

// orMore lists kinds that may leave more rows than decisions: a tus PATCH
// re-checks write access every second while its body streams, and each
// re-check is recorded (see RELIABILITY.md).
var orMore = map[string]bool{"tus PATCH": true}

func decisionsOf(kind string) int {
	if n, ok := decisions[kind]; ok {
		return n
	}
	return 1
}

type auditRow struct {
	Door, Subject, Action, Decision, RequestID string
}

// checkAudit reads the whole trail and matches it against the attempts by
// request id. Every text column of every row goes through scan.
func checkAudit(t *testing.T, ctx context.Context, db *bun.DB, attempts []attempt, scan func(where, text string)) auditReport {
	rep := auditReport{kinds: map[string]map[int]int{}, dropped: map[int]int{}}
	byID := map[string][]auditRow{}
	rows, err := db.QueryContext(ctx, `SELECT seq, door, subject, action, object, node_id, decision, rule, remote, request_id, prev_hash, hash FROM audit ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var seq int64
		var f [11]string
		if err := rows.Scan(&seq, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8], &f[9], &f[10]); err != nil {
			t.Fatal(err)
		}
		rep.rows++
		scan(fmt.Sprintf("audit row %d", seq), strings.Join(f[:], "\x00"))
		byID[f[8]] = append(byID[f[8]], auditRow{Door: f[0], Subject: f[1], Action: f[2], Decision: f[5], RequestID: f[8]})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()

	sent := map[string]bool{}
	for _, a := range attempts {
		sent[a.id] = true
		got := byID[a.id]
		if a.status == 0 {
			rep.dropped[len(got)]++
			continue
		}
		key := fmt.Sprintf("%s %d", a.kind, a.status)
		if rep.kinds[key] == nil {
			rep.kinds[key] = map[int]int{}
		}
		rep.kinds[key][len(got)]++
		if a.status/100 == 2 && decisionsOf(a.kind) > 0 {
			rep.ok2xx++
			rep.rows2xx += len(got)
			rep.want2xx += decisionsOf(a.kind)
			if len(got) != decisionsOf(a.kind) && !(orMore[a.kind] && len(got) > decisionsOf(a.kind)) {
				rep.unaudited++
				if rep.unaudited <= 10 {
					t.Errorf("request %s (%s, %d) left %d audit rows, want %d", a.id, a.kind, a.status, len(got), decisionsOf(a.kind))
				}
			}
		}
		for _, r := range got {
			okDecision := a.status/100 != 2 || r.Decision == model.AuditAllow
			if r.Door != a.door || r.Subject != a.subject || !okDecision {
				rep.wrongRows++
				if rep.wrongRows <= 10 {
					t.Errorf("request %s (%s, %d, %s via %s): audit row %+v", a.id, a.kind, a.status, a.subject, a.door, r)
				}
			}
		}
	}
	for id := range byID {
		if !sent[id] {
			rep.foreignIDs += len(byID[id])
		}
	}
	vr, err := model.NewAuditLog(db).Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep.chainOK = vr.OK
	if !vr.OK {
		t.Errorf("audit chain: %+v", vr)
	}
	return rep
}

// perRequest is audit rows per successful request of an audited kind;
// perDecision is audit rows per authorization decision those requests
// needed.
func (r auditReport) perRequest() float64  { return float64(r.rows2xx) / float64(max(r.ok2xx, 1)) }
func (r auditReport) perDecision() float64 { return float64(r.rows2xx) / float64(max(r.want2xx, 1)) }

// oddKinds lists the request kinds (with status) whose attempts did not
// each produce exactly one audit row, with how many rows they left.
func (r auditReport) oddKinds() []string {
	var out []string
	for k, hist := range r.kinds {
		if len(hist) == 1 && hist[1] > 0 {
			continue
		}
		var parts []string
		for _, rows := range slices.Sorted(maps.Keys(hist)) {
			parts = append(parts, fmt.Sprintf("%d of them left %d rows", hist[rows], rows))
		}
		out = append(out, k+": "+strings.Join(parts, ", "))
	}
	sort.Strings(out)
	return out
}
