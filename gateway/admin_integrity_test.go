package gateway_test

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

// Admins see the scheduled integrity check's runs and the damaged files
// they found through the admin API, and /metrics carries the last run's
// figures for alerting; other users are refused. Every answer is checked
// against openapi.json.
func TestIntegrityChecksThroughTheAPI(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAdmEnv(t, db)
		e.user("alice", false)
		ctx := context.Background()
		oa := loadOpenAPI(t)
		do := func(q admReq, status int) admResp {
			t.Helper()
			r := e.do(q)
			if path, _, _ := strings.Cut(q.path, "?"); strings.HasPrefix(path, gateway.APIPrefix) {
				oa.check(t, q.method, path, result{status: r.status, header: r.header, body: r.body})
			}
			if r.status != status {
				t.Fatalf("%s %s: %d, want %d: %s", q.method, q.path, r.status, status, r.body)
			}
			return r
		}
		root := func(path string, status int) admResp {
			t.Helper()
			return do(admReq{method: http.MethodGet, path: path, key: e.rootKey}, status)
		}
		metric := func(name string) string {
			t.Helper()
			resp, err := http.Get(e.ts.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(b)
			if m == nil {
				return ""
			}
			return string(m[1])
		}

		var none struct{ Checks []map[string]any }
		if root("/api/v1/integrity-checks", 200).json(t, &none); none.Checks == nil || len(none.Checks) != 0 {
			t.Fatalf("before any run: %+v", none)
		}
		if got := metric("filegate_integrity_check_running"); got != "0" || metric("filegate_integrity_check_last_damaged_files") != "" {
			t.Fatalf("metrics before any run: running %q", got)
		}

		// Lose a.txt's bytes, then let a scheduled run find it.
		if err := e.store.Blobs.Delete(ctx, e.aTxt.BlobKey); err != nil {
			t.Fatal(err)
		}
		run, err := e.store.CheckOnce(ctx, model.ScheduledCheck{Every: time.Hour, Holder: "test"})
		if err != nil || run == nil || run.Problems != 1 {
			t.Fatalf("run %+v, %v", run, err)
		}

		var list struct {
			Checks []struct {
				ID, State, Instance    string
				Files, Problems, Bytes int64
			}
		}
		root("/api/v1/integrity-checks?limit=5", 200).json(t, &list)
		if len(list.Checks) != 1 || list.Checks[0].ID != run.ID || list.Checks[0].State != "done" ||
			list.Checks[0].Files != 2 || list.Checks[0].Problems != 1 || list.Checks[0].Instance != "test" {
			t.Fatalf("list: %+v", list)
		}
		var detail struct {
			ID           string
			DamagedFiles []struct{ FileID, Path, Kind string } `json:"damaged_files"`
		}
		root("/api/v1/integrity-checks/"+run.ID, 200).json(t, &detail)
		if len(detail.DamagedFiles) != 1 || detail.DamagedFiles[0].Path != "/reports/a.txt" || detail.DamagedFiles[0].Kind != "missing" {
			t.Fatalf("detail: %+v", detail)
		}
		if got := metric("filegate_integrity_check_last_damaged_files"); got != "1" || metric("filegate_integrity_check_last_files") != "2" {
			t.Fatalf("metrics after the run: damaged %q", got)
		}

		// Check now: 202 with a run no instance holds yet; a second
		// request while it is under way gets 409 and that run; both the
		// start and the refusals are audited.
		var started struct{ ID, State string }
		do(admReq{method: http.MethodPost, path: "/api/v1/integrity-checks", key: e.rootKey}, http.StatusAccepted).json(t, &started)
		if started.ID == "" || started.ID == run.ID || started.State != "running" {
			t.Fatalf("started %+v", started)
		}
		var busy struct {
			Error struct {
				Code  string
				Check struct{ ID string }
			}
		}
		do(admReq{method: http.MethodPost, path: "/api/v1/integrity-checks", key: e.rootKey}, http.StatusConflict).json(t, &busy)
		if busy.Error.Code != "check_running" || busy.Error.Check.ID != started.ID {
			t.Fatalf("second start: %+v", busy)
		}
		do(admReq{method: http.MethodPost, path: "/api/v1/integrity-checks", basic: "alice"}, http.StatusForbidden)
		audited := false
		for _, row := range e.auditRows() {
			if row.Action == "integrity.check" && row.Object == started.ID && row.Decision == model.AuditAllow {
				audited = true
			}
		}
		if !audited {
			t.Fatal("no audit row for the started check")
		}
		if got := metric("filegate_integrity_check_running"); got != "1" {
			t.Fatalf("running metric %q after the start", got)
		}
		picked, err := e.store.CheckOnce(ctx, model.ScheduledCheck{Every: time.Hour, Holder: "test"})
		if err != nil || picked == nil || picked.ID != started.ID || picked.State != model.IntegrityDone {
			t.Fatalf("the started check was not taken up: %+v, %v", picked, err)
		}

		do(admReq{method: http.MethodGet, path: "/api/v1/integrity-checks", basic: "alice"}, http.StatusForbidden)
		do(admReq{method: http.MethodGet, path: "/api/v1/integrity-checks/" + run.ID, basic: "alice"}, http.StatusForbidden)
		do(admReq{method: http.MethodGet, path: "/api/v1/integrity-checks"}, http.StatusUnauthorized)
		root("/api/v1/integrity-checks/nope", http.StatusNotFound)
		root("/api/v1/integrity-checks?limit=0", http.StatusBadRequest)
	})
}

// Admins can have the audit trail's hash chain recomputed through the
// admin API (and so from the page): intact, then edited behind the
// application's back.
func TestAuditVerifyThroughTheAPI(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newAdmEnv(t, db)
		e.user("alice", false)
		ctx := context.Background()
		oa := loadOpenAPI(t)
		type verification struct {
			OK       bool
			Rows     int64
			HeadSeq  int64  `json:"head_seq"`
			HeadHash string `json:"head_hash"`
			BadSeq   int64  `json:"bad_seq"`
			Problem  string
		}
		verify := func(q admReq, status int) verification {
			t.Helper()
			r := e.do(q)
			oa.check(t, q.method, q.path, result{status: r.status, header: r.header, body: r.body})
			if r.status != status {
				t.Fatalf("%s: %d, want %d: %s", q.path, r.status, status, r.body)
			}
			var v verification
			if status == http.StatusOK {
				r.json(t, &v)
			}
			return v
		}
		root := admReq{method: http.MethodGet, path: "/api/v1/audit/verify", key: e.rootKey}
		// Each admin read is audited, the verification included.
		for range 3 {
			e.root(http.MethodGet, "/api/v1/users", nil)
		}
		v := verify(root, http.StatusOK)
		if !v.OK || v.Rows < 3 || v.HeadSeq != v.Rows || len(v.HeadHash) != 64 {
			t.Fatalf("intact trail: %+v", v)
		}
		verify(admReq{method: http.MethodGet, path: "/api/v1/audit/verify", basic: "alice"}, http.StatusForbidden)

		drop := []string{"DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete"}
		if model.IsPostgres(db) {
			drop = []string{"DROP TRIGGER audit_no_change ON audit"}
		}
		for _, s := range drop {
			if _, err := db.ExecContext(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.ExecContext(ctx, "UPDATE audit SET subject = 'user:mallory' WHERE seq = 2"); err != nil {
			t.Fatal(err)
		}
		if v := verify(root, http.StatusOK); v.OK || v.BadSeq != 2 || !strings.Contains(v.Problem, "does not match its hash") {
			t.Fatalf("edited trail: %+v", v)
		}
	})
}
