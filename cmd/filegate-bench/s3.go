package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/filegate/filegate/model/blob/s3test"
)

// The S3 targets: filegate on PostgreSQL with its blobs in a bucket, and
// the same work done straight through aws-sdk-go-v2, both against one
// versitygw the harness starts. Their rows form a section of their own
// in the report, which -merge can replace without touching the rest.
const (
	sectionS3     = "s3"
	targetFGS3    = "filegate/pg-s3"
	targetSDK     = "raw-sdk"
	targetSDKFast = "raw-sdk-tuned"
)

// s3Env is the versitygw every S3 target of a run shares.
type s3Env struct {
	srv     *s3test.Server
	buckets atomic.Int64
}

// wantS3 says whether the run has any S3 target.
func (c *config) wantS3() bool {
	return c.wantTarget(targetFGS3) || c.wantTarget(targetSDK) || c.wantTarget(targetSDKFast) || c.wantTarget(targetSDKProxied)
}

// isS3Target says whether name is a column of the S3 section.
func isS3Target(name string) bool {
	return name == targetFGS3 || name == targetSDK || name == targetSDKFast || name == targetSDKProxied
}

// startS3 runs versitygw on its posix backend in a folder of the run, on
// the disk the other targets write to.
func startS3(dir string) (*s3Env, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	srv, err := s3test.Start(dir)
	if err != nil {
		return nil, err
	}
	return &s3Env{srv: srv}, nil
}

func (e *s3Env) close() {
	if e != nil {
		e.srv.Remove()
	}
}

// newBucket creates an empty bucket for one target and workload.
func (e *s3Env) newBucket(ctx context.Context, tag string) (string, error) {
	name := fmt.Sprintf("fgbench-%s-%d", strings.ReplaceAll(tag, "_", "-"), e.buckets.Add(1))
	return name, e.srv.CreateBucket(ctx, name)
}

// versitygwVersion is the version `make deps` installs, from s3test.Install.
func versitygwVersion() string {
	_, v, _ := strings.Cut(s3test.Install, "@")
	return v
}

// s3Specs are the S3 columns; they are n/a when versitygw is missing.
func (h *harness) s3Specs(pgNA string) []*targetSpec {
	na := ""
	if h.s3Err != nil {
		na = "n/a (no S3 server: " + short(h.s3Err.Error(), 80) + ")"
	}
	fgNA := pgNA
	if fgNA == "" {
		fgNA = na
	}
	return []*targetSpec{
		{Name: targetFGS3, Role: roleSubject, Caps: capS3, Section: sectionS3, DAVPath: "/dav/", TusPath: "/uploads/", NA: fgNA, start: h.startFilegateS3},
		{Name: targetSDK, Role: roleLimit, Caps: capS3, Section: sectionS3, NA: na, start: h.startSDK(false)},
		{Name: targetSDKFast, Role: roleLimit, Caps: capS3, Section: sectionS3, NA: na, start: h.startSDK(true)},
		{Name: targetSDKProxied, Role: roleLimit, Caps: capS3, Section: sectionS3, NA: na, start: h.startSDKProxied},
	}
}

// startFilegateS3 runs the real binary on a fresh PostgreSQL database with
// its blobs in a fresh bucket.
func (h *harness) startFilegateS3(ctx context.Context, dir, tag string) (*running, error) {
	bucket, err := h.s3.newBucket(ctx, tag)
	if err != nil {
		return nil, err
	}
	return h.startFilegateOn(ctx, h.spec(targetFGS3), dir, tag, true, h.s3.srv.URL(bucket, "filegate"), s3test.Env())
}

// sdkTarget is the raw SDK doing a workload's work itself: no server of
// its own, like the disk limit.
type sdkTarget struct {
	c      *s3.Client
	bucket string
	tuned  bool
}

// startSDK makes an SDK client on a fresh bucket. The default one is
// aws-sdk-go-v2 as its documentation shows it (manager.Uploader at its
// defaults, signed payloads, SDK-computed checksums); the tuned one sends
// unsigned payloads without checksums or 100-continue and 8 MiB parts,
// which does strictly less work per byte than s3blob does.
func (h *harness) startSDK(tuned bool) startFunc {
	return func(ctx context.Context, dir, tag string) (*running, error) {
		bucket, err := h.s3.newBucket(ctx, tag)
		if err != nil {
			return nil, err
		}
		name := targetSDK
		if tuned {
			name = targetSDKFast
		}
		t := &sdkTarget{bucket: bucket, tuned: tuned, c: newSDKClient(h.s3.srv.Endpoint, tuned)}
		return &running{spec: h.spec(name), dir: dir, sdk: t, stop: func() {}}, nil
	}
}

func newSDKClient(endpoint string, tuned bool) *s3.Client {
	opts := s3.Options{
		Region:       s3test.Region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s3test.AccessKey, s3test.SecretKey, ""),
		HTTPClient: awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConnsPerHost = 64
		}),
	}
	if !tuned {
		return s3.New(opts)
	}
	return s3.New(opts, func(o *s3.Options) {
		o.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConnsPerHost = 64
			tr.WriteBufferSize = bufSize
			tr.ReadBufferSize = bufSize
		})
		o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
		o.ContinueHeaderThresholdBytes = -1
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.DisableLogOutputChecksumValidationSkipped = true
	})
}

// put uploads size generated bytes with manager.Uploader.
func (t *sdkTarget) put(ctx context.Context, key string, size int64, seed uint64) error {
	up := manager.NewUploader(t.c, func(u *manager.Uploader) {
		if t.tuned {
			u.PartSize = 8 << 20
		}
	})
	_, err := up.Upload(ctx, &s3.PutObjectInput{Bucket: &t.bucket, Key: &key, Body: struct{ io.Reader }{newBody(size, seed)}})
	return err
}

// putSmall stores one small object with PutObject.
func (t *sdkTarget) putSmall(ctx context.Context, key string, size int64, seed uint64) error {
	var buf bytes.Buffer
	newBody(size, seed).WriteTo(&buf)
	_, err := t.c.PutObject(ctx, &s3.PutObjectInput{Bucket: &t.bucket, Key: &key, Body: bytes.NewReader(buf.Bytes()), ContentLength: aws.Int64(size)})
	return err
}

// get reads an object to the end in 256 KiB reads, as the HTTP client
// reads every target's responses. It also returns the time GetObject took
// to return, which is the time to the answer's headers.
func (t *sdkTarget) get(ctx context.Context, key string) (int64, time.Duration, error) {
	start := time.Now()
	out, err := t.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &t.bucket, Key: &key})
	if err != nil {
		return 0, 0, err
	}
	ttfb := time.Since(start)
	defer out.Body.Close()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	n, err := io.CopyBuffer(onlyWriter{io.Discard}, out.Body, *bp)
	return n, ttfb, err
}

// chunked is the SDK's equivalent of a tus upload in chunks: one
// multipart upload whose parts of chunk bytes (at least S3's 5 MiB) go
// one after another, each acknowledged before the next is read, as a tus
// client waits for each PATCH.
func (t *sdkTarget) chunked(ctx context.Context, key string, size, chunk int64, seed uint64) error {
	chunk = max(chunk, 5<<20)
	up, err := t.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &t.bucket, Key: &key})
	if err != nil {
		return err
	}
	body := newBody(size, seed)
	buf := make([]byte, chunk)
	var parts []types.CompletedPart
	for n := int32(1); ; n++ {
		k, err := io.ReadFull(body, buf)
		if k == 0 {
			break
		}
		out, perr := t.c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &t.bucket, Key: &key, UploadId: up.UploadId,
			PartNumber: aws.Int32(n), Body: bytes.NewReader(buf[:k]), ContentLength: aws.Int64(int64(k))})
		if perr != nil {
			t.c.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: &t.bucket, Key: &key, UploadId: up.UploadId})
			return perr
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.ETag,
			ChecksumCRC32: out.ChecksumCRC32, ChecksumCRC32C: out.ChecksumCRC32C, ChecksumCRC64NVME: out.ChecksumCRC64NVME})
		if err != nil {
			break
		}
	}
	_, err = t.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &t.bucket, Key: &key, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	return err
}

func (t *sdkTarget) delete(ctx context.Context, key string) {
	t.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &t.bucket, Key: &key})
}

// s3Workloads are the S3 section's scenarios, with their own metric ids
// so that their rows never mix with the local-disk ones.
func (h *harness) s3Workloads() []*workload {
	c := h.cfg
	big, small := fmtSize(c.bigSize), fmtSize(c.smallSize)
	m := func(id, label string, higher bool) metricDef {
		return metricDef{ID: id, Label: label, Higher: higher, Section: sectionS3}
	}
	return []*workload{
		{ID: "s3big", Large: true, on: capS3, Metrics: []metricDef{
			m("s3_put_big", "PUT "+big+" (WebDAV), MB/s", true),
			m("s3_get_big", "GET "+big+", MB/s", true),
			m("s3_ttfb_big", "GET "+big+", time to first byte, ms", false),
			m("s3_rss_big", "filegate peak RSS during "+big+" PUT, MiB", false),
			m("s3_cpu_put_big", "gateway CPU per GiB of the PUT, s", false),
			m("s3_cpu_get_big", "gateway CPU per GiB of the GET, s", false),
		}, setup: s3Setup(mkcolBase("bench-big/")), round: roundS3Big},
		{ID: "s3tusbig", Large: true, on: capS3, Metrics: []metricDef{
			m("s3_tus_big", fmt.Sprintf("tus %s in %s PATCHes, MB/s", big, fmtSize(c.tusChunk)), true),
			m("s3_rss_tus_big", "filegate peak RSS during tus "+big+", MiB", false),
		}, round: roundS3TusBig},
		{ID: "s3small", on: capS3, Metrics: []metricDef{
			m("s3_small_put", fmt.Sprintf("%d PUTs of %s, %d workers, ops/s", c.smallN, small, c.workers), true),
			m("s3_small_put_p50", "small PUT p50, ms", false),
			m("s3_small_put_p99", "small PUT p99, ms", false),
			m("s3_small_get", fmt.Sprintf("%d GETs of %s, %d workers, ops/s", c.smallN, small, c.workers), true),
			m("s3_small_get_p50", "small GET p50, ms", false),
			m("s3_small_get_p99", "small GET p99, ms", false),
		}, round: roundS3Small},
	}
}

// s3Setup runs a WebDAV setup step on filegate only.
func s3Setup(fn func(ctx context.Context, h *harness, r *running) error) func(ctx context.Context, h *harness, r *running) error {
	return func(ctx context.Context, h *harness, r *running) error {
		if r.sdk != nil {
			return nil
		}
		return fn(ctx, h, r)
	}
}

// prefixed renames the metrics of a local-disk round to their S3 ids.
func prefixed(vals map[string]float64, err error) (map[string]float64, error) {
	out := make(map[string]float64, len(vals))
	for k, v := range vals {
		out["s3_"+k] = v
	}
	return out, err
}

func roundS3Big(ctx context.Context, h *harness, r *running, round int) (map[string]float64, error) {
	if r.sdk == nil {
		return prefixed(roundBig(ctx, h, r, round))
	}
	size := h.cfg.bigSize
	key := fmt.Sprintf("big-r%d.bin", round)
	out := map[string]float64{}
	syscall.Sync()
	cpu := procCPU(r)
	t0 := time.Now()
	if err := r.sdk.put(ctx, key, size, uint64(round)); err != nil {
		return nil, err
	}
	out["s3_put_big"] = mbps(size, time.Since(t0))
	cpu.perGiB(out, "s3_cpu_put_big", size)
	cpu = procCPU(r)
	t0 = time.Now()
	for i := range bigGets {
		n, ttfb, err := r.sdk.get(ctx, key)
		if err != nil {
			return out, err
		}
		if n != size {
			return out, fmt.Errorf("GET %s: read %d bytes, want %d", key, n, size)
		}
		if i == 0 {
			out["s3_ttfb_big"] = ms(ttfb)
		}
	}
	out["s3_get_big"] = mbps(bigGets*size, time.Since(t0))
	cpu.perGiB(out, "s3_cpu_get_big", bigGets*size)
	r.sdk.delete(ctx, key)
	return out, nil
}

func roundS3TusBig(ctx context.Context, h *harness, r *running, round int) (map[string]float64, error) {
	if r.sdk == nil {
		return prefixed(roundTusBig(ctx, h, r, round))
	}
	size := h.cfg.bigSize
	key := fmt.Sprintf("tus-big-r%d.bin", round)
	syscall.Sync()
	t0 := time.Now()
	if err := r.sdk.chunked(ctx, key, size, h.cfg.tusChunk, uint64(round)); err != nil {
		return nil, err
	}
	out := map[string]float64{"s3_tus_big": mbps(size, time.Since(t0))}
	r.sdk.delete(ctx, key)
	return out, nil
}

func roundS3Small(ctx context.Context, h *harness, r *running, round int) (map[string]float64, error) {
	if r.sdk == nil {
		return prefixed(roundSmall(ctx, h, r, round))
	}
	c := h.cfg
	out := map[string]float64{}
	key := func(i int) string { return fmt.Sprintf("small-r%d/f%05d", round, i) }
	lat, el, err := parallel(ctx, c.smallN, c.workers, func(ctx context.Context, i int) error {
		return r.sdk.putSmall(ctx, key(i), c.smallSize, uint64(i))
	})
	if err != nil {
		return nil, err
	}
	latencyStats(out, "s3_small_put", c.smallN, lat, el)
	lat, el, err = parallel(ctx, c.smallN, c.workers, func(ctx context.Context, i int) error {
		n, _, err := r.sdk.get(ctx, key(i))
		if err == nil && n != c.smallSize {
			err = fmt.Errorf("GET %s: read %d bytes, want %d", key(i), n, c.smallSize)
		}
		return err
	})
	if err != nil {
		return out, err
	}
	latencyStats(out, "s3_small_get", c.smallN, lat, el)
	return out, nil
}

// Markers around the S3 section, so -merge can replace it alone.
const (
	s3Begin = "<!-- filegate-bench:s3 begin -->"
	s3End   = "<!-- filegate-bench:s3 end -->"
)

// s3Section is the report's S3 part: its own run line, so that it still
// says where it came from after -merge put it into an older report.
func (h *harness) s3Section(started time.Time, all []*targetSpec) string {
	specs := inSection(h.rec.usedTargets(all), sectionS3)
	if len(specs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(s3Begin + "\n## S3\n\n")
	fmt.Fprintf(&b, "Run %s, took %s, `%s`; rounds: %d for large workloads, %d for small ones; load average at start %s, at end %s.\n\n",
		started.UTC().Format("2006-01-02 15:04 MST"), time.Since(started).Round(time.Second),
		strings.TrimSpace("go run ./cmd/filegate-bench "+strings.Join(h.args, " ")), h.cfg.roundsLarge, h.cfg.roundsSmall, h.loadStart, loadAvg())
	fmt.Fprintf(&b, "versitygw %s (posix backend, a folder on the disk under test) on 127.0.0.1", versitygwVersion())
	var mods []string
	for _, mod := range []string{"github.com/aws/aws-sdk-go-v2/service/s3", "github.com/aws/aws-sdk-go-v2/feature/s3/manager"} {
		if v := h.modVersion(context.Background(), mod); v != "" {
			mods = append(mods, mod+" "+v)
		}
	}
	if len(mods) > 0 {
		fmt.Fprintf(&b, "; %s", strings.Join(mods, ", "))
	}
	if h.pg != nil {
		fmt.Fprintf(&b, "; PostgreSQL %s (%s) for filegate/pg-s3", h.pg.Version, h.pg.Settings)
	}
	if rev := firstLine(h.root, "git", "describe", "--always", "--dirty"); rev != "" {
		fmt.Fprintf(&b, "; filegate commit %s", rev)
	}
	b.WriteString(".\n\n")
	b.WriteString(h.rec.resultsTableKind("S3 workload", specs, sectionS3))
	b.WriteString("\n")
	b.WriteString(h.rec.s3RatioTable(specs))
	b.WriteString("\n" + s3MethodText)
	if notes := h.rec.notesOf(true); len(notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for _, n := range notes {
			b.WriteString("- " + n + "\n")
		}
	}
	b.WriteString(s3End + "\n")
	return b.String()
}

// s3RatioTable divides filegate's median by each raw SDK column's.
func (r *recorder) s3RatioTable(specs []*targetSpec) string {
	var subj, lims []*targetSpec
	for _, s := range specs {
		if s.Role == roleLimit {
			lims = append(lims, s)
		} else {
			subj = append(subj, s)
		}
	}
	var b strings.Builder
	b.WriteString("| S3 ratios |")
	for _, s := range subj {
		for _, l := range lims {
			b.WriteString(" " + s.Name + " ÷ " + l.Name + " |")
		}
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(subj)*len(lims)) + "\n")
	for _, m := range r.metrics {
		if m.Section != sectionS3 || m.NoRatio || strings.Contains(m.ID, "rss") || strings.Contains(m.ID, "cpu") {
			continue
		}
		arrow := " ↓"
		if m.Higher {
			arrow = " ↑"
		}
		b.WriteString("| " + escapeCell(m.Label) + arrow + " |")
		for _, s := range subj {
			v, ok := r.median(m.ID, s.Name)
			for _, l := range lims {
				lv, lok := r.median(m.ID, l.Name)
				if !ok {
					b.WriteString(" – |")
					continue
				}
				b.WriteString(" " + ratio(v, lv, lok) + " |")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

const s3MethodText = `- filegate/pg-s3 is the real binary on PostgreSQL (the same cluster as filegate/pg) with ` + "`--blob-url s3://BUCKET/filegate?endpoint=…&path_style=true`" + `, a fresh bucket and database per workload; the load client drives it exactly as the local-disk targets (WebDAV PUT/GET, tus PATCHes).
- raw-sdk does the same work from the load process straight to the same versitygw with aws-sdk-go-v2 at its defaults: manager.Uploader for the large PUT (5 MiB parts, 5 at a time, signed payloads, CRC32 checksums), one multipart upload with one 8 MiB UploadPart after another for the tus row (a tus client waits for each PATCH), PutObject and GetObject for small files, GetObject read in 256 KiB reads for GETs.
- raw-sdk-tuned is the same with less work per byte than s3blob does: unsigned payloads, no checksums, no 100-continue, 8 MiB parts for the large PUT.
- raw-sdk-via-proxy is raw-sdk sent through a bare reverse proxy in a process of its own (net/http/httputil with 4 MiB copy buffers, keeping the Host header SigV4 signs): every byte crosses the same second loopback hop as through filegate, and nothing else is done to it. It is the ceiling of any gateway between a client and S3 on this machine.
- raw-sdk and raw-sdk-tuned store no metadata, hash no SHA-256 and cross no second HTTP hop, so they are ceilings too: ratios are filegate's median over each column's (↑ rows: above 1 is better).
- A round GETs the large object three times in a row and reports the bytes over the time of all three: a single 1 GiB GET lasts 0.2–0.5 s here and single GETs of one target spread 1.1–3.6 GB/s within one run. The time to first byte is the first GET's, right after the upload.
- Peak RSS is filegate's own process (VmHWM after clear_refs), not versitygw's; gateway CPU per GiB is the user+system time (/proc/PID/stat) of filegate's process, or of the bare proxy's, over the transfer divided by its size.
- On this 2-core machine the client, versitygw and a gateway share the cores, so the second hop alone holds a GET well below a direct one: the bare proxy's GET ratio to raw-sdk is the most any gateway can reach here. filegate reads S3 bodies and writes the client's answer in 4 MiB pieces, nearly all of its CPU in the kernel's socket copies (perf), about as much per GiB as the bare proxy's. Splicing socket to socket was measured and was slower (1.4–1.7 GB/s against 1.8–2.2 for copying in the same run): a splice from a loopback TCP socket still copies into the pipe.
- A PUT costs versitygw 3–4 CPU-seconds per GiB (page-cache writes, MD5 for ETags, then the assembled object written again), on either side; filegate's largest cost is the SHA-256 of every byte (about 1 CPU-second per GiB, in a goroutine of its own so that it overlaps reading and uploading). Per tus PATCH filegate adds to the part upload two small reads and one write of the upload's state object and the tus bookkeeping in the database.
`

// inSection keeps the targets of one section ("" for the local-disk one).
func inSection(specs []*targetSpec, section string) []*targetSpec {
	var out []*targetSpec
	for _, s := range specs {
		if s.Section == section {
			out = append(out, s)
		}
	}
	return out
}

// spliceSection puts section between the markers of doc, replacing what
// was there; a doc without them gets it before its authorization section,
// or at the end.
func spliceSection(doc, section string) string {
	if i := strings.Index(doc, s3Begin); i >= 0 {
		if j := strings.Index(doc[i:], s3End); j >= 0 {
			rest := strings.TrimPrefix(doc[i+j+len(s3End):], "\n")
			return doc[:i] + section + rest
		}
	}
	if i := strings.Index(doc, "\n## Authorization decision"); i >= 0 {
		return doc[:i+1] + section + "\n" + doc[i+1:]
	}
	return strings.TrimRight(doc, "\n") + "\n\n" + section
}

// mergeJSONL keeps the lines of old that belong to no S3 workload and
// appends fresh.
func mergeJSONL(old, fresh []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(old, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 || bytes.Contains(line, []byte(`"workload":"s3`)) {
			continue
		}
		out.Write(line)
		out.WriteByte('\n')
	}
	out.Write(fresh)
	return out.Bytes()
}

// errMergeMixed refuses -merge on a run that measured local-disk targets.
var errMergeMixed = errors.New("-merge writes only the S3 section: run it with S3 targets only (-targets " + targetFGS3 + "," + targetSDK + "," + targetSDKFast + "," + targetSDKProxied + ")")

// s3Dir is versitygw's folder, inside the run's.
func (h *harness) s3Dir() string { return filepath.Join(h.runDir, "versitygw") }

// mergeInto writes section into the existing report in place of its S3
// section, and the run's raw lines into the existing ones in place of
// their S3 lines; without an existing report both are written as they are.
func (h *harness) mergeInto(section string, jsonl *os.File) error {
	jsonl.Close()
	fresh, err := os.ReadFile(h.cfg.out + ".jsonl.tmp")
	if err != nil {
		return err
	}
	os.Remove(h.cfg.out + ".jsonl.tmp")
	doc, err := os.ReadFile(h.cfg.out + ".md")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.WriteFile(h.cfg.out+".md", []byte(spliceSection(string(doc), section)), 0o644); err != nil {
		return err
	}
	old, err := os.ReadFile(h.cfg.out + ".jsonl")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.WriteFile(h.cfg.out+".jsonl", mergeJSONL(old, fresh), 0o644)
}

// isS3Note says whether a report note is about the S3 section: it names
// an S3 workload, an S3 target or the S3 server.
func isS3Note(n string) bool {
	return strings.HasPrefix(n, sectionS3) || strings.Contains(n, targetFGS3) ||
		strings.Contains(n, targetSDK) || strings.HasPrefix(n, "S3 server")
}

// notesOf returns the notes of the S3 section (s3) or of the rest.
func (r *recorder) notesOf(s3 bool) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, n := range r.notes {
		if isS3Note(n) == s3 {
			out = append(out, n)
		}
	}
	return out
}
