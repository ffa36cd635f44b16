package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMedianAndPercentile(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{7}, 7},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
	in := []float64{5, 4}
	median(in)
	if in[0] != 5 {
		t.Error("median sorted its input")
	}
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(101-i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.1, time.Millisecond}} {
		if got := percentile(ds, tc.p); got != tc.want {
			t.Errorf("percentile(p%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile([]time.Duration{9 * time.Millisecond}, 99); got != 9*time.Millisecond {
		t.Errorf("p99 of one sample = %v", got)
	}
	s := summarize([]float64{3, 9, 1})
	if s.Median != 3 || s.Min != 1 || s.Max != 9 || s.N != 3 {
		t.Errorf("summarize = %+v", s)
	}
	if got := rotate([]int{1, 2, 3}, 4); !equalInts(got, []int{2, 3, 1}) {
		t.Errorf("rotate = %v", got)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestGeneratedBodyIsTheSameReadOrWritten(t *testing.T) {
	const n = 3*bufSize + 12345
	var viaWrite bytes.Buffer
	if _, err := newBody(n, 7).WriteTo(&viaWrite); err != nil {
		t.Fatal(err)
	}
	viaRead, err := io.ReadAll(io.LimitReader(struct{ io.Reader }{newBody(n, 7)}, n+10))
	if err != nil {
		t.Fatal(err)
	}
	if viaWrite.Len() != n || len(viaRead) != n || !bytes.Equal(viaWrite.Bytes(), viaRead) {
		t.Fatalf("write %d bytes, read %d bytes, equal %v", viaWrite.Len(), len(viaRead), bytes.Equal(viaWrite.Bytes(), viaRead))
	}
	if bytes.Equal(viaRead[:4096], viaRead[bufSize:bufSize+4096]) {
		t.Error("two chunks of one body are equal; offsets are not stamped")
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	env := map[string]string{"FILEGATE_BENCH_SHORT": "1", "FILEGATE_BENCH_ROUNDS_LARGE": "7", "FILEGATE_BENCH_TARGETS": "x/net,limit"}
	c, err := parseFlags([]string{"-rounds-large", "2"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if !c.short || c.bigSize != 64<<20 {
		t.Errorf("short from env: short=%v bigSize=%d", c.short, c.bigSize)
	}
	if c.roundsLarge != 2 {
		t.Errorf("rounds-large = %d, the command line must win over the environment", c.roundsLarge)
	}
	if !c.wantTarget("limit") || c.wantTarget("rclone") {
		t.Errorf("targets filter from env not applied: %q", c.targets)
	}
	if _, err := parseFlags(nil, func(k string) string {
		return map[string]string{"FILEGATE_BENCH_ROUNDS_SMALL": "many"}[k]
	}); err == nil {
		t.Error("a bad FILEGATE_BENCH_ROUNDS_SMALL was accepted")
	}
	c, _ = parseFlags([]string{"-smoke"}, func(string) string { return "" })
	if c.buildTusd || c.roundsLarge != 1 || c.bigSize != 8<<20 {
		t.Errorf("smoke: buildTusd=%v roundsLarge=%d bigSize=%d", c.buildTusd, c.roundsLarge, c.bigSize)
	}
}

func TestParseBench(t *testing.T) {
	out := `goos: linux
BenchmarkDecide/grants=1000-2         	  500000	      2345 ns/op	     312 B/op	       6 allocs/op
BenchmarkDecide/grants=100000-2       	  100000	     12000 ns/op	     320 B/op	       7 allocs/op
BenchmarkDecide/grants=1000-2         	  500000	      2111 ns/op	     312 B/op	       6 allocs/op
BenchmarkOther-2 1 5 ns/op
PASS`
	res := parseBench(out)
	if len(res) != 2 || res[0].Name != "BenchmarkDecide/grants=1000" || len(res[0].NsOp) != 2 || res[0].NsOp[1] != 2111 {
		t.Fatalf("parseBench = %+v", res)
	}
	if res[1].BOp != 320 || res[1].Allocs != 7 {
		t.Errorf("B/op, allocs = %v, %v", res[1].BOp, res[1].Allocs)
	}
}

// testSpecs is a table with one target of each role.
func testSpecs() []*targetSpec {
	return []*targetSpec{
		{Name: "filegate/sqlite", Role: roleSubject},
		{Name: "x/net", Role: rolePeer},
		{Name: "rclone", Role: rolePeer},
		{Name: "limit", Role: roleLimit},
		{Name: "disk", Role: roleLimit},
	}
}

func TestTablesRatiosAndCompare(t *testing.T) {
	w := &workload{ID: "big", Metrics: []metricDef{
		{ID: "put", Label: "PUT 1 GiB, MB/s", Higher: true},
		{ID: "p99", Label: "p99 | ms"},
	}}
	build := func(scale float64, out io.Writer) *recorder {
		rec := newRecorder(out)
		rec.addRows(w)
		for i, v := range []float64{100, 120, 110} {
			rec.value(w, "filegate/sqlite", i, "put", v*scale)
		}
		rec.value(w, "x/net", 0, "put", 200)
		rec.value(w, "rclone", 0, "put", 50)
		rec.value(w, "limit", 0, "put", 1000)
		rec.value(w, "disk", 0, "put", 400)
		rec.value(w, "x/net", 0, "p99", 10)
		rec.value(w, "rclone", 0, "p99", 20)
		rec.value(w, "limit", 0, "p99", 2)
		rec.unavailable(w, "disk", "n/a (door not built)")
		return rec
	}
	var raw bytes.Buffer
	rec := build(1, &raw)
	specs := testSpecs()
	res := rec.resultsTable(specs)
	if !strings.Contains(res, "| PUT 1 GiB, MB/s | 110 (100–120) | 200 | 50.0 | 1000 | 400 |") {
		t.Errorf("results table:\n%s", res)
	}
	if !strings.Contains(res, `| p99 \| ms | – | 10.0 | 20.0 | 2.00 | n/a (door not built) |`) {
		t.Errorf("escaped label or n/a cell missing:\n%s", res)
	}
	ratios := rec.ratioTable(specs)
	// Best peer is x/net (200); the binding limit is the disk (400 < 1000).
	if !strings.Contains(ratios, "| PUT 1 GiB, MB/s ↑ | 0.55× · 0.28× | 1.00× · 0.50× | 0.25× · 0.12× | x/net | disk |") {
		t.Errorf("ratio table:\n%s", ratios)
	}
	// Lower is better: best peer is the lowest p99, the limit the highest floor.
	if !strings.Contains(ratios, `| p99 \| ms ↓ | – | 1.00× · 5.00× | 2.00× · 10.00× | x/net | limit |`) {
		t.Errorf("ratio table for a lower-is-better row:\n%s", ratios)
	}
	lines := strings.Split(strings.TrimSpace(raw.String()), "\n")
	var first record
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Value == nil || *first.Value != 100 || first.Target != "filegate/sqlite" {
		t.Errorf("first JSON line %q: %v", lines[0], err)
	}

	oldDoc := "# old\n\n" + res
	newDoc := "# new\n\n" + build(1.1, nil).resultsTable(specs)
	higher := func(label string) (bool, bool) {
		for _, m := range w.Metrics {
			if m.Label == label {
				return m.Higher, true
			}
		}
		return false, false
	}
	cmp := compareTables(oldDoc, newDoc, higher)
	if !strings.Contains(cmp, "| PUT 1 GiB, MB/s | filegate/sqlite | 110 | 121 | +10.0% (within the rounds' spread) |") {
		t.Errorf("compare of overlapping ranges:\n%s", cmp)
	}
	faster := compareTables(oldDoc, "# new\n\n"+build(1.5, nil).resultsTable(specs), higher)
	if !strings.Contains(faster, "| PUT 1 GiB, MB/s | filegate/sqlite | 110 | 165 | +50.0% better |") {
		t.Errorf("compare:\n%s", faster)
	}
	if strings.Contains(cmp, "| x/net | 200 | 200 | +0.0% better") || !strings.Contains(cmp, "| x/net | 200 | 200 | +0.0% |") {
		t.Errorf("an unchanged cell must get no verdict:\n%s", cmp)
	}
	if strings.Contains(cmp, "disk | n/a") {
		t.Errorf("n/a cells must not be compared:\n%s", cmp)
	}
	if !rangesOverlap("110 (100–120)", "121 (110–132)") || rangesOverlap("110 (100–120)", "130 (125–140)") || rangesOverlap("5", "5") {
		t.Error("rangesOverlap is wrong")
	}
	if got := compareTables("nothing here", newDoc, higher); !strings.HasPrefix(got, "No cell") {
		t.Errorf("compare with no old table: %q", got)
	}
}

// testHarness is a harness with smoke sizes and no processes.
func testHarness(t *testing.T) *harness {
	t.Helper()
	cfg, err := parseFlags([]string{"-smoke"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return &harness{cfg: cfg, sup: newSupervisor(), rec: newRecorder(nil), stderr: io.Discard, runDir: t.TempDir()}
}

// TestWorkloadsAgainstTheLimitServer drives every HTTP workload over real
// loopback HTTP against the limit server, and checks what the server saw.
func TestWorkloadsAgainstTheLimitServer(t *testing.T) {
	h := testHarness(t)
	ls := newLimitServer()
	srv := httptest.NewServer(ls)
	defer srv.Close()
	r := &running{spec: &targetSpec{Name: "limit", Role: roleLimit, Caps: capDAV | capTus, DAVPath: "/", TusPath: "/files/"},
		ep: &endpoint{client: newClient(), base: srv.URL}}
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		round func(ctx context.Context, h *harness, r *running, round int) (map[string]float64, error)
		want  []string
	}{
		{"big", roundBig, []string{"put_big", "get_big"}},
		{"small", roundSmall, []string{"small_put", "small_put_p99", "small_get", "small_get_p50"}},
		{"meta", roundMeta, []string{"meta", "mkcol", "move", "delete"}},
		{"tusbig", roundTusBig, []string{"tus_big"}},
		{"tussmall", roundTusSmall, []string{"tus_small", "tus_small_p99"}},
	} {
		vals, err := tc.round(ctx, h, r, 0)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for _, m := range tc.want {
			if vals[m] <= 0 {
				t.Errorf("%s: %s = %v, want > 0", tc.name, m, vals[m])
			}
		}
		if _, ok := vals["rss_big"]; ok {
			t.Errorf("%s: a limit got an RSS figure", tc.name)
		}
	}
	if got := ls.sizes["/bench-big/big-r0.bin"]; got != h.cfg.bigSize {
		t.Errorf("limit server saw a big PUT of %d bytes, want %d", got, h.cfg.bigSize)
	}
	if got := ls.sizes["/bench-small-r0/f00049"]; got != h.cfg.smallSize {
		t.Errorf("limit server saw a small PUT of %d bytes, want %d", got, h.cfg.smallSize)
	}
	// Creation-with-upload and PATCH uploads both got a Location each.
	if want := int64(1 + h.cfg.tusSmallN); ls.ids.Load() != want {
		t.Errorf("limit server created %d tus uploads, want %d", ls.ids.Load(), want)
	}
}

func TestDiskLimitWritesAndCleansUp(t *testing.T) {
	h := testHarness(t)
	dir := t.TempDir()
	r := &running{spec: &targetSpec{Name: "disk", Role: roleLimit, Caps: capDisk}, dir: dir}
	vals, err := roundBig(context.Background(), h, r, 0)
	if err != nil || vals["put_big"] <= 0 {
		t.Fatalf("disk big: %v, %v", vals, err)
	}
	vals, err = roundSmall(context.Background(), h, r, 1)
	if err != nil || vals["small_put"] <= 0 || vals["small_get"] != 0 {
		t.Fatalf("disk small: %v, %v", vals, err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(left) != 0 {
		t.Errorf("disk limit left %v behind", left)
	}
}

// TestMissingDoorIsNotAvailableNotAFailure runs a whole workload where the
// subject answers 404: its rows say n/a, the limit's have numbers, and the
// harness counts no breakage.
func TestMissingDoorIsNotAvailableNotAFailure(t *testing.T) {
	h := testHarness(t)
	missing := httptest.NewServer(http.NotFoundHandler())
	defer missing.Close()
	limit := httptest.NewServer(newLimitServer())
	defer limit.Close()
	serveAt := func(url string) startFunc {
		return func(_ context.Context, dir, _ string) (*running, error) {
			return &running{ep: &endpoint{client: newClient(), base: url}, dir: dir, stop: func() {}}, nil
		}
	}
	h.specs = []*targetSpec{
		{Name: "filegate/sqlite", Role: roleSubject, Caps: capDAV, DAVPath: "/dav/", start: serveAt(missing.URL)},
		{Name: "limit", Role: roleLimit, Caps: capDAV, DAVPath: "/", start: serveAt(limit.URL)},
	}
	for _, s := range h.specs {
		start := s.start
		s.start = func(ctx context.Context, dir, tag string) (*running, error) {
			r, err := start(ctx, dir, tag)
			r.spec = s
			return r, err
		}
	}
	var meta *workload
	for _, w := range h.workloads() {
		if w.ID == "meta" {
			meta = w
		}
	}
	h.runWorkload(context.Background(), meta)
	if got := h.rec.cells[cellKey{"meta", "filegate/sqlite"}].text(); got != "n/a (door not built)" {
		t.Errorf("subject cell = %q", got)
	}
	if c := h.rec.cells[cellKey{"meta", "limit"}]; c == nil || len(c.vals) != 1 || c.vals[0] <= 0 {
		t.Errorf("limit cell = %+v", c)
	}
	if len(h.harnessErrs) != 0 {
		t.Errorf("harness errors: %v", h.harnessErrs)
	}
	if _, err := os.Stat(filepath.Join(h.runDir, "meta")); !os.IsNotExist(err) {
		t.Errorf("workload folder not removed: %v", err)
	}
}

func TestS3SectionMergesIntoAnOlderReport(t *testing.T) {
	old := "# report\n\n| workload | a |\n|---|---|\n| PUT | 1 |\n\n## Authorization decision\n\nx\n"
	sec1 := s3Begin + "\n## S3\n\nfirst\n" + s3End + "\n"
	sec2 := s3Begin + "\n## S3\n\nsecond\n" + s3End + "\n"
	once := spliceSection(old, sec1)
	if !strings.Contains(once, "| PUT | 1 |") || !strings.Contains(once, "first") ||
		strings.Index(once, "first") > strings.Index(once, "## Authorization decision") {
		t.Fatalf("first merge:\n%s", once)
	}
	twice := spliceSection(once, sec2)
	if strings.Contains(twice, "first") || strings.Count(twice, s3Begin) != 1 || !strings.Contains(twice, "second") ||
		!strings.Contains(twice, "| PUT | 1 |") || !strings.Contains(twice, "## Authorization decision") {
		t.Fatalf("second merge:\n%s", twice)
	}
	oldLines := `{"workload":"big","target":"x/net"}` + "\n" + `{"workload":"s3big","target":"raw-sdk"}` + "\n"
	got := string(mergeJSONL([]byte(oldLines), []byte(`{"workload":"s3small","target":"raw-sdk"}`+"\n")))
	want := `{"workload":"big","target":"x/net"}` + "\n" + `{"workload":"s3small","target":"raw-sdk"}` + "\n"
	if got != want {
		t.Fatalf("merged jsonl:\n%s\nwant:\n%s", got, want)
	}
}

func TestS3Selection(t *testing.T) {
	c, err := parseFlags([]string{"-targets", "s3", "-workloads", "big"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if !c.wantTarget(targetFGS3) || !c.wantTarget(targetSDK) || !c.wantTarget(targetSDKProxied) || c.wantTarget("filegate/pg") {
		t.Error("-targets s3 does not select exactly the S3 columns")
	}
	if !c.wantWorkload("s3big") || c.wantWorkload("s3small") || !c.wantWorkload("big") {
		t.Error("-workloads big does not select big and s3big only")
	}
	if _, err := parseFlags([]string{"-merge"}, func(string) string { return "" }); err == nil {
		t.Error("-merge with every target was accepted")
	}
	c, err = parseFlags([]string{"-merge", "-targets", "s3"}, func(string) string { return "" })
	if err != nil || !c.wantWorkload("s3tusbig") || c.wantWorkload("small") {
		t.Errorf("-merge -targets s3: err %v, workloads %q", err, c.workloads)
	}
}

func TestSmokeKeepsS3Short(t *testing.T) {
	c, err := parseFlags([]string{"-smoke"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if !c.wantWorkload("s3big") || c.wantWorkload("s3small") || c.wantWorkload("s3tusbig") || !c.wantWorkload("small") {
		t.Error("smoke runs other S3 workloads than s3big, or drops a local one")
	}
	if !c.wantTarget(targetFGS3) || !c.wantTarget(targetSDK) || c.wantTarget(targetSDKFast) || c.wantTarget(targetSDKProxied) {
		t.Error("smoke does not run exactly filegate/pg-s3 and raw-sdk")
	}
}

func TestCPUSecondsOfThisProcess(t *testing.T) {
	before, err := cpuSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the counter moves; a counter that never moves fails.
	deadline := time.Now().Add(time.Minute)
	for x := 0; time.Now().Before(deadline); x++ {
		if x%1_000_000 != 0 {
			continue
		}
		after, err := cpuSeconds(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after > before {
			return
		}
	}
	t.Fatal("cpuSeconds did not grow while this process spun for a minute")
}
