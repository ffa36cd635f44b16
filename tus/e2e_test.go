package tus_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob"
	"github.com/filegate/filegate/model/blob/s3blob"
	"github.com/filegate/filegate/model/blob/s3test"
	"github.com/filegate/filegate/model/dbtest"
)

// nodeScript returns the node binary and the tus-js-client driver script,
// skipping (or failing under CI) when `make deps` has not installed them.
func nodeScript(t *testing.T) (string, string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		if _, err = os.Stat("../node_modules/tus-js-client/package.json"); err == nil {
			return node, filepath.Join("testdata", "js", "upload.js")
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("node and tus-js-client are required under CI (make deps): %v", err)
	}
	t.Skipf("node or tus-js-client missing (run make deps): %v", err)
	return "", ""
}

type jsResult struct {
	URL     string `json:"url"`
	Bytes   int64  `json:"bytes"`
	Aborted bool   `json:"aborted"`
	Sent    int64  `json:"sent"`
}

// runJS runs the driver script and returns its result and exit code.
func runJS(t *testing.T, node, script string, args ...string) (jsResult, int, string) {
	t.Helper()
	cmd := exec.Command(node, append([]string{script}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var r jsResult
	if line := strings.TrimSpace(out.String()); line != "" {
		if err := json.Unmarshal([]byte(line[strings.LastIndexByte(line, '\n')+1:]), &r); err != nil {
			t.Fatalf("driver output %q: %v", line, err)
		}
	}
	return r, code, errb.String()
}

func jsArgs(p *serveProc, file, urlFile string, extra ...string) []string {
	return append([]string{"--endpoint", p.base() + "/uploads/", "--file", file, "--user", "admin",
		"--password", adminPassword, "--url-file", urlFile}, extra...)
}

// A 50 MiB upload aborted at about 40% is finished by a new client
// process, at the same upload URL, with identical bytes; and a 0-byte
// upload works. The bytes live in a local folder, or in S3 (versitygw).
func TestTusJSClientResumesInNewProcess(t *testing.T) {
	node, script := nodeScript(t)
	bin := buildFilegate(t)
	t.Run("local", func(t *testing.T) {
		data := t.TempDir()
		dbURL, blobs := "sqlite://"+data+"/filegate.db", filepath.Join(data, "blobs")
		p := startServe(t, bin, data)
		jsResumeAndEmpty(t, node, script, p,
			func(path string) (string, string, int64) { return storedFile(t, dbURL, blobs, path) },
			func() []string { return blobLeftovers(blobs) })
	})
	t.Run("s3", func(t *testing.T) {
		srv := s3test.StartT(t)
		bucket := srv.NewBucket(t)
		blobURL := srv.URL(bucket, "filegate")
		data := t.TempDir()
		dbURL := "sqlite://" + data + "/filegate.db"
		p := startServe(t, bin, data, append(s3test.Env(), "FILEGATE_BLOB_URL="+blobURL)...)
		s3test.SetEnv(t)
		cfg, err := s3blob.ParseURL(blobURL)
		if err != nil {
			t.Fatal(err)
		}
		store, err := s3blob.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		jsResumeAndEmpty(t, node, script, p,
			func(path string) (string, string, int64) { return storedIn(t, dbURL, store, path) },
			func() []string { return s3Leftovers(t, srv, bucket) })
	})
}

// jsResumeAndEmpty runs the 50 MiB abort-and-resume and the 0-byte
// uploads against p; stored reads back what the server recorded at a path
// and leftovers lists what partial uploads left behind.
func jsResumeAndEmpty(t *testing.T, node, script string, p *serveProc,
	stored func(path string) (recorded, actual string, size int64), leftovers func() []string) {
	file, sum := randomFile(t, 50<<20)
	urlFile := filepath.Join(t.TempDir(), "url")

	r, code, stderr := runJS(t, node, script, jsArgs(p, file, urlFile, "--name", "ct-50.bin", "--abort-at", "0.4")...)
	if code != 3 || !r.Aborted {
		t.Fatalf("first client: exit %d %+v\n%s", code, r, stderr)
	}
	first := r.URL
	r, code, stderr = runJS(t, node, script, jsArgs(p, file, urlFile, "--name", "ct-50.bin", "--resume")...)
	if code != 0 {
		t.Fatalf("second client: exit %d\n%s", code, stderr)
	}
	if r.URL != first {
		t.Fatalf("the second client started over (%s) instead of resuming %s", r.URL, first)
	}
	rec, got, size := stored("/ct-50.bin")
	if rec != sum || got != sum || size != 50<<20 {
		t.Fatalf("stored %d bytes, recorded sha256 %s, actual %s, want %s", size, rec, got, sum)
	}

	empty := filepath.Join(t.TempDir(), "empty.bin")
	os.WriteFile(empty, nil, 0o600)
	if _, code, stderr := runJS(t, node, script, jsArgs(p, empty, urlFile+"0")...); code != 0 {
		t.Fatalf("0-byte upload: exit %d\n%s", code, stderr)
	}
	rec, got, size = stored("/empty.bin")
	if size != 0 || rec != sum256(nil) || got != rec {
		t.Fatalf("0-byte file: size %d sha %s", size, rec)
	}
	if left := leftovers(); len(left) != 0 {
		t.Fatalf("leftovers: %v", left)
	}
}

// storedIn reads what the server recorded at path from its database and
// blob store, and returns the recorded and the actual SHA-256.
func storedIn(t *testing.T, dbURL string, blobs blob.Store, path string) (recorded, actual string, size int64) {
	t.Helper()
	ctx := context.Background()
	db, err := model.OpenDB(ctx, model.DBOptions{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store := model.NewStore(model.NewRepo(db), blobs, nil)
	n, err := store.Repo.LiveByPath(ctx, path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	r, err := store.Open(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return n.SHA256, hex.EncodeToString(h.Sum(nil)), n.Size
}

// s3Leftovers lists what unfinished uploads left in a bucket: objects
// under partial/ and multipart uploads never completed or aborted.
func s3Leftovers(t *testing.T, srv *s3test.Server, bucket string) []string {
	t.Helper()
	ctx := context.Background()
	c := srv.Client()
	var out []string
	objs, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String("filegate/partial/")})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs.Contents {
		out = append(out, *o.Key)
	}
	ups, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range ups.Uploads {
		out = append(out, "multipart upload of "+*u.Key)
	}
	return out
}

// The server is SIGKILLed while tus-js-client is in the middle of a PATCH;
// it is restarted, the client resumes on its own, and the file arrives
// whole with nothing left behind in the blob folder.
func TestTusJSClientSurvivesServerKill(t *testing.T) {
	node, script := nodeScript(t)
	bin := buildFilegate(t)
	data := t.TempDir()
	p := startServe(t, bin, data)
	const size = 64 << 20
	file, sum := randomFile(t, size)
	urlFile := filepath.Join(t.TempDir(), "url")
	blobs := filepath.Join(data, "blobs")

	type res struct {
		r      jsResult
		code   int
		stderr string
	}
	done := make(chan res, 1)
	go func() {
		r, code, stderr := runJS(t, node, script, jsArgs(p, file, urlFile, "--name", "killed.bin")...)
		done <- res{r, code, stderr}
	}()
	waitFor(t, "the server to hold part of the upload", func() bool { return partialBytes(blobs) > size/4 })
	if n := partialBytes(blobs); n >= size {
		t.Fatalf("upload finished (%d bytes) before the kill", n)
	}
	p.sigkill()
	p.restart()
	var out res
	select {
	case out = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("client did not finish after the restart")
	}
	if out.code != 0 {
		t.Fatalf("client: exit %d\n%s\nserver:\n%s", out.code, out.stderr, p.out.String())
	}
	rec, got, n := storedFile(t, "sqlite://"+data+"/filegate.db", blobs, "/killed.bin")
	if rec != sum || got != sum || n != size {
		t.Fatalf("stored %d bytes, recorded sha256 %s, actual %s, want %s", n, rec, got, sum)
	}
	if left := blobLeftovers(blobs); len(left) != 0 {
		t.Fatalf("leftovers after the kill: %v", left)
	}
}

// Two processes share one PostgreSQL database and one blob folder: an
// upload moves from one to the other, simultaneous PATCHes are serialised
// by the lock, and after the first process dies the second takes over the
// upload it was writing once the lease runs out.
func TestTwoProcessesOnPostgres(t *testing.T) {
	bin := buildFilegate(t)
	dbURL := dbtest.URL(t, dbtest.Postgres)
	blobs := t.TempDir()
	env := []string{"FILEGATE_DATABASE_URL=" + dbURL, "FILEGATE_BLOB_URL=" + blobs, "FILEGATE_UPLOAD_LOCK_LEASE=3s"}
	a := startServe(t, bin, t.TempDir(), env...)
	b := startServe(t, bin, t.TempDir(), env...)
	create := func(p *serveProc, name string, size int) string {
		resp := adminReq(t, "POST", p.base()+"/uploads/", map[string]string{"Upload-Length": strconv.Itoa(size),
			"Upload-Metadata": meta("filename", name)}, nil, 0)
		wantStatus(t, "create "+name, resp, 201)
		return resp.Header.Get("Location")
	}
	patch := func(p *serveProc, loc string, off int, body []byte) *http.Response {
		return adminReq(t, "PATCH", p.base()+"/uploads/"+path.Base(loc), map[string]string{
			"Upload-Offset": strconv.Itoa(off), "Content-Type": "application/offset+octet-stream"}, bytes.NewReader(body), int64(len(body)))
	}
	check := func(name string, body []byte) {
		rec, got, n := storedFile(t, dbURL, blobs, "/"+name)
		if rec != sum256(body) || got != rec || n != int64(len(body)) {
			t.Fatalf("%s: stored %d bytes, sha256 %s / %s", name, n, rec, got)
		}
	}
	// slowPatch holds a PATCH open on p with part of the body sent.
	slowPatch := func(p *serveProc, loc string, body []byte, first int) (*io.PipeWriter, chan *http.Response) {
		pw, done := startPatchAs(p.base()+"/uploads/"+path.Base(loc), "admin", adminPassword)
		pw.Write(body[:first])
		waitFor(t, "the lock row", func() bool { return lockRows(t, dbURL, path.Base(loc)) == 1 })
		return pw, done
	}

	// Started on A, finished on B.
	body := data(3<<20, 21)
	loc := create(a, "moved.bin", len(body))
	wantStatus(t, "A", patch(a, loc, 0, body[:1<<20]), 204)
	wantStatus(t, "B", patch(b, loc, 1<<20, body[1<<20:]), 204)
	check("moved.bin", body)

	// PATCHes to both at once: the lock lets one through.
	body = data(2<<20, 22)
	loc = create(a, "both.bin", len(body))
	pw, done := slowPatch(a, loc, body, 128<<10)
	wantStatus(t, "B while A holds the lock", patch(b, loc, 0, data(len(body), 23)), 423, 409)
	pw.Write(body[128<<10:])
	pw.Close()
	if resp := <-done; resp == nil || resp.StatusCode != 204 {
		t.Fatalf("A's PATCH: %v", resp)
	}
	check("both.bin", body)

	// A dies holding the lock; B waits out the lease, then finishes.
	// A's last refresh may have come up to a third of the lease before
	// the kill, so the row is given an hour while B's PATCH is refused (a
	// slow machine must not let the lease run out before B asks), then
	// the 3 s lease again, for B's HEAD to wait out.
	body = data(2<<20, 24)
	loc = create(a, "dead.bin", len(body))
	pw, done = slowPatch(a, loc, body, 512<<10)
	a.sigkill()
	pw.Close()
	<-done
	setLease(t, dbURL, path.Base(loc), time.Hour)
	wantStatus(t, "B inside the lease", patch(b, loc, 0, body), 423)
	setLease(t, dbURL, path.Base(loc), 3*time.Second)
	resp := adminReq(t, "HEAD", b.base()+"/uploads/"+path.Base(loc), nil, nil, 0)
	wantStatus(t, "B HEAD after the lease", resp, 200)
	off, _ := strconv.Atoi(resp.Header.Get("Upload-Offset"))
	if off > 512<<10 {
		t.Fatalf("offset %d beyond what A received", off)
	}
	wantStatus(t, "B finishes", patch(b, loc, off, body[off:]), 204)
	check("dead.bin", body)
}
