package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/filegate/filegate/model"
)

// listIntegrityChecks answers GET /api/v1/integrity-checks: the latest
// runs of the scheduled integrity check, newest first.
func (ad *admin) listIntegrityChecks(w http.ResponseWriter, r *http.Request) {
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			apiBadRequest(w, "invalid", "limit must be between 1 and 1000")
			return
		}
		limit = n
	}
	runs, err := ad.s.repo.IntegrityRuns(r.Context(), limit)
	if err != nil {
		ad.s.writeError(w, r, err)
		return
	}
	if runs == nil {
		runs = []*model.IntegrityRun{}
	}
	adminJSON(w, http.StatusOK, struct {
		Checks []*model.IntegrityRun `json:"checks"`
	}{runs})
}

// startIntegrityCheck answers POST /api/v1/integrity-checks: a run starts
// now instead of at its scheduled time (after a disk incident, or a
// restore), picked up within a minute by an instance whose scheduled
// check is on. A run already under way is answered 409 with that run.
func (ad *admin) startIntegrityCheck(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	run, err := ad.s.repo.RequestIntegrityRun(ctx, time.Now())
	if errors.Is(err, model.ErrExists) {
		var b checkRunningBody
		b.Error.Code, b.Error.Check = "check_running", run
		b.Error.Message = "An integrity check is under way; follow it in GET /api/v1/integrity-checks/{id}."
		adminJSON(w, http.StatusConflict, b)
		return
	}
	if err != nil {
		ad.s.writeError(w, r, err)
		return
	}
	auditErr := ad.record(ctx, r, "integrity.check", run.ID, true, auditDetail{})
	ad.applied(w, auditErr, http.StatusAccepted, run)
}

// checkRunningBody is the 409 of a check asked for while one runs: the
// usual error body, with the running check.
type checkRunningBody struct {
	Error struct {
		Code    string              `json:"code"`
		Message string              `json:"message"`
		Check   *model.IntegrityRun `json:"check"`
	} `json:"error"`
}

// maxIntegrityProblems bounds the problems one answer lists; the log and
// `filegate check` have them all.
const maxIntegrityProblems = 1000

// getIntegrityCheck answers GET /api/v1/integrity-checks/{id}: one run
// and the damaged files it found, in path order.
func (ad *admin) getIntegrityCheck(w http.ResponseWriter, r *http.Request) {
	run, probs, err := ad.s.repo.IntegrityRunByID(r.Context(), r.PathValue("id"), maxIntegrityProblems)
	if err != nil {
		ad.s.writeError(w, r, err)
		return
	}
	adminJSON(w, http.StatusOK, struct {
		*model.IntegrityRun
		DamagedFiles []*model.IntegrityProblem `json:"damaged_files"`
	}{run, probs})
}

// verifyAudit answers GET /api/v1/audit/verify: the audit trail's hash
// chain recomputed from the first row to the head, as `filegate audit
// verify` does, so that an auditor can see from the admin page that no
// row was edited, removed or reordered. It reads every row: seconds for
// millions.
func (ad *admin) verifyAudit(w http.ResponseWriter, r *http.Request) {
	rep, err := ad.audit.Verify(r.Context())
	if err != nil {
		ad.s.writeError(w, r, err)
		return
	}
	adminJSON(w, http.StatusOK, struct {
		OK       bool   `json:"ok"`
		Rows     int64  `json:"rows"`
		HeadSeq  int64  `json:"head_seq"`
		HeadHash string `json:"head_hash"`
		BadSeq   int64  `json:"bad_seq,omitempty"`
		Problem  string `json:"problem,omitempty"`
	}{rep.OK, rep.Rows, rep.HeadSeq, rep.HeadHash, rep.BadSeq, rep.Problem})
}

// integrityCollector exports the state of the scheduled integrity check,
// read from the shared runs table at each scrape, so every instance shows
// the same figures and an alert can fire on damage or on a check that
// stopped running.
type integrityCollector struct {
	repo                            *model.Repo
	running, finished, files, found *prometheus.Desc
}

func newIntegrityCollector(repo *model.Repo) *integrityCollector {
	return &integrityCollector{
		repo: repo,
		running: prometheus.NewDesc("filegate_integrity_check_running",
			"1 while a run of the scheduled integrity check is under way (on any instance).", nil, nil),
		finished: prometheus.NewDesc("filegate_integrity_check_last_finished_timestamp_seconds",
			"When the last completed run of the integrity check finished (Unix time).", nil, nil),
		files: prometheus.NewDesc("filegate_integrity_check_last_files",
			"Files the last completed run of the integrity check read back.", nil, nil),
		found: prometheus.NewDesc("filegate_integrity_check_last_damaged_files",
			"Files whose stored bytes did not match their record in the last completed run of the integrity check.", nil, nil),
	}
}

func (c *integrityCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.running
	ch <- c.finished
	ch <- c.files
	ch <- c.found
}

func (c *integrityCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// A running run is the newest; the last completed one is right
	// behind it unless the one before failed.
	runs, err := c.repo.IntegrityRuns(ctx, 3)
	if err != nil {
		return // the scrape shows the series missing rather than stale
	}
	running := 0.0
	for _, run := range runs {
		switch run.State {
		case model.IntegrityRunning:
			running = 1
		case model.IntegrityDone:
			if run.FinishedAt == nil {
				continue
			}
			ch <- prometheus.MustNewConstMetric(c.finished, prometheus.GaugeValue, float64(run.FinishedAt.UnixNano())/1e9)
			ch <- prometheus.MustNewConstMetric(c.files, prometheus.GaugeValue, float64(run.Files))
			ch <- prometheus.MustNewConstMetric(c.found, prometheus.GaugeValue, float64(run.Problems))
			ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, running)
			return
		}
	}
	ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, running)
}

// damageCollector exports the downloads of this instance that found a
// file's stored bytes damaged (model.Store.DownloadDamage), so that an
// alert fires when a clinician's download does, not a week later.
type damageCollector struct {
	store *model.Store
	desc  *prometheus.Desc
}

func newDamageCollector(store *model.Store) *damageCollector {
	return &damageCollector{store: store, desc: prometheus.NewDesc("filegate_damaged_downloads_total",
		"Downloads refused or cut short because the file's stored bytes were missing (kind=missing), of another size than recorded (size), or hashed to another SHA-256 with --verify-downloads (sha256).",
		[]string{"kind"}, nil)}
}

func (c *damageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *damageCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.store.DownloadDamage()
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(d.Missing), "missing")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(d.Size), "size")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(d.SHA256), "sha256")
}
