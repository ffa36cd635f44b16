// Command filegate-bench measures filegate against its peers (a bare
// x/net/webdav server, tusd, rclone) and against the limits of the machine
// (a loopback server that does nothing, a raw fsynced disk write), with one
// load client that drives every target the same way.
//
// Usage:
//
//	go run ./cmd/filegate-bench [-short | -smoke] [-compare OLD.md] [-targets a,b] [-workloads a,b]
//
// Every flag can also be set as FILEGATE_BENCH_<NAME> (e.g.
// FILEGATE_BENCH_SHORT=1); the command line wins. The report goes to
// stdout and to <out>.md, raw results to <out>.jsonl. The exit status is
// non-zero only when the harness itself breaks, never because a target is
// slow or not built yet.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config holds the sizes and choices of one run.
type config struct {
	short, smoke, keep, buildTusd bool
	merge                         bool
	bigSize, tusChunk             int64
	smallSize, tusSmallSize       int64
	smallN, workers, metaN        int
	tusSmallN, listReqs           int
	listSizes                     []int
	roundsLarge, roundsSmall      int
	targets, workloads            string
	out, workDir, compare         string
	policyBenchtime               string
}

// wantTarget says whether the run has target name; "s3" names every
// column of the S3 section.
func (c *config) wantTarget(name string) bool {
	if c.smoke && c.targets == "" && (name == targetSDKFast || name == targetSDKProxied) {
		return false // the smoke check needs one SDK column, not three
	}
	return inList(c.targets, name) || (isS3Target(name) && inList(c.targets, sectionS3))
}

// wantWorkload says whether the run has workload id; the S3 workloads
// (s3big, s3tusbig, s3small) also answer to "s3" and to the name of the
// local-disk workload they mirror.
func (c *config) wantWorkload(id string) bool {
	if c.smoke && c.workloads == "" && (id == "s3tusbig" || id == "s3small") {
		return false // s3big checks the S3 targets; the rest would double the smoke run's time
	}
	if rest, ok := strings.CutPrefix(id, sectionS3); ok && rest != "" {
		return inList(c.workloads, id) || inList(c.workloads, sectionS3) || inList(c.workloads, rest)
	}
	return inList(c.workloads, id) || (id != "policy" && strings.HasPrefix(id, "list") && inList(c.workloads, "list"))
}

func inList(list, name string) bool {
	if list == "" || list == "all" {
		return true
	}
	for _, x := range strings.Split(list, ",") {
		if strings.TrimSpace(x) == name {
			return true
		}
	}
	return false
}

// applySizes sets the workload sizes for the mode: the full set, -short
// for a quick look, -smoke to check the harness in seconds.
func (c *config) applySizes() {
	c.bigSize, c.tusChunk, c.smallSize, c.tusSmallSize = 1<<30, 8<<20, 4<<10, 64<<10
	c.smallN, c.workers, c.metaN, c.tusSmallN = 2000, 8, 500, 200
	c.listSizes, c.listReqs = []int{2000, 20000}, 20
	large, small := 3, 5
	switch {
	case c.smoke:
		c.bigSize, c.tusChunk = 8<<20, 2<<20
		c.smallN, c.metaN, c.tusSmallN = 50, 20, 10
		c.listSizes, c.listReqs = []int{20, 100}, 3
		large, small = 1, 1
		c.policyBenchtime = "1x"
	case c.short:
		c.bigSize = 64 << 20
		c.smallN, c.metaN, c.tusSmallN = 500, 100, 50
		c.listSizes, c.listReqs = []int{200, 1000}, 5
		large, small = 1, 2
		c.policyBenchtime = "100ms"
	}
	if c.roundsLarge == 0 {
		c.roundsLarge = large
	}
	if c.roundsSmall == 0 {
		c.roundsSmall = small
	}
}

// parseFlags reads the command line, then FILEGATE_BENCH_* for every flag
// the command line did not set.
func parseFlags(args []string, getenv func(string) string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("filegate-bench", flag.ContinueOnError)
	fs.BoolVar(&c.short, "short", false, "cut sizes: 64 MiB files, fewer requests, fewer rounds")
	fs.BoolVar(&c.smoke, "smoke", false, "tiny sizes and 1 round: checks that the harness works, measures nothing")
	fs.IntVar(&c.roundsLarge, "rounds-large", 0, "rounds for large workloads (default 3; 1 with -short or -smoke)")
	fs.IntVar(&c.roundsSmall, "rounds-small", 0, "rounds for small workloads (default 5; 2 with -short, 1 with -smoke)")
	fs.StringVar(&c.targets, "targets", "", "comma list of targets (default all): filegate/sqlite,filegate/pg,x/net,rclone,tusd,limit,disk,filegate/pg-s3,raw-sdk,raw-sdk-tuned,raw-sdk-via-proxy; s3 names the last four")
	fs.StringVar(&c.workloads, "workloads", "", "comma list of workloads (default all): big,small,list,meta,tusbig,tussmall,policy,s3big,s3tusbig,s3small; s3 names the last three, and big, tusbig and small include their s3 twins")
	fs.BoolVar(&c.merge, "merge", false, "write only the S3 section into the existing <out>.md (between its markers) and replace only the S3 lines of <out>.jsonl; needs S3 targets only")
	fs.StringVar(&c.out, "out", "", "report path without extension (default bench/results/latest; bench/work/short or bench/work/smoke with -short or -smoke, so quick runs never replace the committed results)")
	fs.StringVar(&c.workDir, "work", "", "folder for binaries, logs and target data (default bench/work)")
	fs.StringVar(&c.compare, "compare", "", "an earlier report (.md) to show the change against")
	fs.BoolVar(&c.keep, "keep", false, "keep the targets' data folders after the run")
	fs.BoolVar(&c.buildTusd, "build-tusd", true, "build tusd when bench/work has no binary for the pinned version (off with -smoke)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		env := "FILEGATE_BENCH_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && !set[f.Name] {
			if err := fs.Set(f.Name, v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s: %w", env, err)
			}
			set[f.Name] = true
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if c.smoke && !set["build-tusd"] {
		c.buildTusd = false
	}
	if c.merge {
		for _, t := range []string{"filegate/sqlite", "filegate/pg", "x/net", "rclone", "tusd", "limit", "disk"} {
			if c.wantTarget(t) {
				return nil, errMergeMixed
			}
		}
		if c.workloads == "" {
			c.workloads = sectionS3
		}
	}
	c.applySizes()
	return c, nil
}

// harness is one run: the targets, their processes and the results.
type harness struct {
	cfg                           *config
	args                          []string
	root, workDir, runDir, logDir string
	self, adminPass, policyNA     string
	sup                           *supervisor
	bins                          binaries
	pg                            *pgServer
	pgErr                         error
	specs                         []*targetSpec
	s3                            *s3Env
	s3Err                         error
	rec                           *recorder
	stderr                        io.Writer
	loadStart                     string
	harnessErrs                   []string
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.stderr, "filegate-bench %s: "+format+"\n", append([]any{time.Now().Format("15:04:05.0")}, args...)...)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve-limit" {
		if err := serveLimit(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "serve-s3-proxy" {
		if err := serveS3Proxy(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// repoRoot is the folder of the module's go.mod, so the harness works from
// any folder of the repo.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run filegate-bench inside the filegate repo")
	}
	return filepath.Dir(mod), nil
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "filegate-bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h := &harness{cfg: cfg, args: args, sup: newSupervisor(), stderr: stderr, loadStart: loadAvg()}
	defer h.sup.killAll()
	if err := h.setup(); err != nil {
		h.logf("%v", err)
		return 1
	}
	if !cfg.keep {
		defer os.RemoveAll(h.runDir)
	}
	jsonl, err := os.Create(cfg.out + ".jsonl.tmp")
	if err != nil {
		h.logf("%v", err)
		return 1
	}
	defer jsonl.Close()
	h.rec = newRecorder(jsonl)
	started := time.Now()
	h.logf("building servers")
	if err := h.buildAll(ctx); err != nil {
		h.logf("harness broken: %v", err)
		return 1
	}
	if h.bins.filegateNote != "" {
		h.rec.note("%s", h.bins.filegateNote)
	}
	if h.bins.filegate != "" && (cfg.wantTarget("filegate/pg") || cfg.wantTarget(targetFGS3)) {
		h.logf("starting PostgreSQL")
		h.pg, h.pgErr = startPG(ctx, h.sup, h.logDir)
		if h.pgErr != nil {
			h.rec.note("PostgreSQL did not start: %v", h.pgErr)
		}
		defer h.pg.close()
	}
	if cfg.wantS3() {
		h.logf("starting versitygw")
		h.s3, h.s3Err = startS3(h.s3Dir())
		if h.s3Err != nil {
			h.rec.note("S3 server did not start: %v", h.s3Err)
		}
		defer h.s3.close()
	}
	h.specs = h.targetSpecs()
	for _, w := range h.workloads() {
		if ctx.Err() != nil {
			break
		}
		h.runWorkload(ctx, w)
	}
	if cfg.wantWorkload("policy") && ctx.Err() == nil {
		h.logf("policy: go test -bench Decide ./policy/")
		h.rec.bench, h.policyNA = h.runPolicyBench(ctx)
	}
	if ctx.Err() != nil {
		h.logf("interrupted; stopping every server")
		return 130
	}
	return h.finish(started, jsonl, stdout)
}

// setup finds the repo and makes the work folders.
func (h *harness) setup() error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	h.root = root
	c := h.cfg
	if c.workDir == "" {
		c.workDir = filepath.Join(root, "bench", "work")
	}
	if c.out == "" {
		switch {
		case c.smoke:
			c.out = filepath.Join(c.workDir, "smoke")
		case c.short:
			c.out = filepath.Join(c.workDir, "short")
		default:
			c.out = filepath.Join(root, "bench", "results", "latest")
		}
	}
	c.out = strings.TrimSuffix(c.out, ".md")
	h.workDir = c.workDir
	// One folder per run, so a smoke check during a long run does not
	// clobber it; folders of runs that died are removed here.
	removeStaleRuns(filepath.Join(c.workDir, "run"))
	h.runDir = filepath.Join(c.workDir, "run", strconv.Itoa(os.Getpid()))
	mode := "full"
	if c.smoke {
		mode = "smoke"
	} else if c.short {
		mode = "short"
	}
	h.logDir = filepath.Join(c.workDir, "logs", mode)
	for _, d := range []string{h.runDir, h.logDir, filepath.Dir(c.out)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if h.self, err = os.Executable(); err != nil {
		return err
	}
	pw := make([]byte, 12)
	rand.Read(pw)
	h.adminPass = hex.EncodeToString(pw)
	return nil
}

// removeStaleRuns deletes run folders whose process is gone.
func removeStaleRuns(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// harnessOwned targets are part of the harness: their failure is a broken
// harness, not a slow or unbuilt server.
func harnessOwned(name string) bool {
	return name == "limit" || name == "disk" || name == "x/net" || name == targetSDK || name == targetSDKFast || name == targetSDKProxied
}

// runWorkload starts every target that has the workload's door, runs the
// setup and the interleaved rounds, and stops them again.
func (h *harness) runWorkload(ctx context.Context, w *workload) {
	if !slices.ContainsFunc(h.specs, func(s *targetSpec) bool { return s.Caps&w.on != 0 }) {
		return // no target has the workload's door: no rows
	}
	h.rec.addRows(w)
	rounds := h.cfg.roundsSmall
	if w.Large {
		rounds = h.cfg.roundsLarge
	}
	h.logf("%s: %d round(s)", w.ID, rounds)
	var active []*running
	defer func() {
		for _, r := range active {
			r.stop()
		}
		if !h.cfg.keep {
			os.RemoveAll(filepath.Join(h.runDir, w.ID))
		}
	}()
	fail := func(r *targetSpec, round int, err error) {
		if r.Role == roleSubject && (doorMissing(err) || errors.Is(err, errNotReady)) {
			why := "n/a (door not built)"
			if !doorMissing(err) {
				why = "n/a (not ready)"
			}
			h.rec.unavailable(w, r.Name, why)
			h.rec.note("%s on %s: %s", w.ID, r.Name, short(err.Error(), 300))
			return
		}
		h.rec.failed(w, r.Name, round, err)
		if harnessOwned(r.Name) && ctx.Err() == nil {
			h.harnessErrs = append(h.harnessErrs, fmt.Sprintf("%s on %s: %v", w.ID, r.Name, err))
		}
	}
	for _, s := range h.specs {
		if s.Caps&w.on == 0 || ctx.Err() != nil {
			continue
		}
		if s.NA != "" {
			h.rec.unavailable(w, s.Name, s.NA)
			continue
		}
		dir, err := h.freshDir(s.Name, w.ID)
		if err == nil {
			var r *running
			if r, err = s.start(ctx, dir, w.ID); err == nil {
				active = append(active, r)
				if w.setup != nil {
					if err = w.setup(ctx, h, r); err != nil {
						active = active[:len(active)-1]
						r.stop()
					}
				}
			}
		}
		if err != nil {
			fail(s, -1, err)
		}
	}
	for round := range rounds {
		var still []*running
		for _, r := range rotate(active, round) {
			if ctx.Err() != nil {
				return
			}
			vals, err := w.round(ctx, h, r, round)
			for _, m := range w.Metrics {
				if v, ok := vals[m.ID]; ok {
					h.rec.value(w, r.spec.Name, round, m.ID, v)
				}
			}
			if err != nil {
				fail(r.spec, round, err)
				r.stop()
				continue
			}
			still = append(still, r)
		}
		// Keep table order for the next rotation.
		active = filterInOrder(active, still)
	}
}

func filterInOrder(all, keep []*running) []*running {
	var out []*running
	for _, r := range all {
		for _, k := range keep {
			if k == r {
				out = append(out, r)
			}
		}
	}
	return out
}

// finish writes the report and the raw lines, prints the report, and
// returns the exit status.
func (h *harness) finish(started time.Time, jsonl *os.File, stdout io.Writer) int {
	doc := h.document(started, h.specs)
	if h.cfg.merge {
		doc = h.s3Section(started, h.specs)
	}
	if h.cfg.compare != "" {
		old, err := os.ReadFile(h.cfg.compare)
		if err != nil {
			h.logf("compare: %v", err)
			h.harnessErrs = append(h.harnessErrs, "compare: "+err.Error())
		} else {
			doc += "\n## Change since " + filepath.Base(h.cfg.compare) + "\n\n" + compareTables(string(old), doc, h.higher)
		}
	}
	fmt.Fprint(stdout, doc)
	status := 0
	if h.cfg.merge {
		if err := h.mergeInto(doc, jsonl); err != nil {
			h.logf("%v", err)
			status = 1
		}
	} else {
		if err := os.WriteFile(h.cfg.out+".md", []byte(doc), 0o644); err != nil {
			h.logf("%v", err)
			status = 1
		}
		jsonl.Close()
		if err := os.Rename(h.cfg.out+".jsonl.tmp", h.cfg.out+".jsonl"); err != nil {
			h.logf("%v", err)
			status = 1
		}
	}
	for _, e := range h.harnessErrs {
		h.logf("harness broken: %s", e)
		status = 1
	}
	h.logf("report: %s.md, raw: %s.jsonl", h.cfg.out, h.cfg.out)
	return status
}

// higher says whether bigger is better on the row with this label.
func (h *harness) higher(label string) (bool, bool) {
	for _, m := range h.rec.metrics {
		if m.Label == label {
			return m.Higher, !m.NoRatio
		}
	}
	return false, false
}
