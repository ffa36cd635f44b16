package tus_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob/localblob"
)

const adminPassword = "e2e-secret"

// The real binary, built once per test run into binDir, which TestMain
// removes.
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binError string
)

// buildFilegate compiles the real binary (once per test run).
func buildFilegate(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "filegate-tus-e2e-")
		if err != nil {
			binError = err.Error()
			return
		}
		binDir = dir
		bin := filepath.Join(dir, "filegate")
		cmd := exec.Command("go", "build", "-o", bin, "github.com/filegate/filegate/cmd/filegate")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binError = fmt.Sprintf("%v\n%s", err, out)
			return
		}
		binPath = bin
	})
	if binPath == "" {
		t.Fatalf("build filegate: %s", binError)
	}
	return binPath
}

// syncBuf collects a child's output.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveProc is a running `filegate serve`.
type serveProc struct {
	t    *testing.T
	bin  string
	port string // "0" until the first start reports the port serve bound
	data string
	env  []string
	cmd  *exec.Cmd
	out  *syncBuf
	done chan struct{}
}

func (p *serveProc) base() string { return "http://127.0.0.1:" + p.port }

// servingRE finds the line serve prints once it listens, with the address
// it bound.
var servingRE = regexp.MustCompile(`serving on http://127\.0\.0\.1:(\d+)`)

// startServe runs the binary with the data folder and extra environment on
// a port of the kernel's choosing, and waits until it is ready and serves
// the tus door. Serve binds port 0 and reports the port it got, so no
// other process can take the port between choosing and binding it, as it
// could if the test picked a free port first.
func startServe(t *testing.T, bin, data string, env ...string) *serveProc {
	t.Helper()
	p := &serveProc{t: t, bin: bin, port: "0", data: data, env: env}
	p.start()
	t.Cleanup(p.kill)
	return p
}

// start starts the process on p.port and waits until it is ready. A
// restart keeps the port, because clients resume uploads at URLs naming
// it; something else can hold the port for a moment (a client connection
// that got it as its source port, say), so when serve exits because the
// address is in use, start tries the same port again for up to 10 s.
func (p *serveProc) start() {
	t := p.t
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !p.startOnce() {
		if time.Now().After(deadline) {
			t.Fatalf("filegate serve found port %s taken for 10s:\n%s", p.port, p.out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startOnce starts the process and waits until it is ready and serves the
// tus door, failing the test when it does not. It returns false when serve
// exited because its port was taken and start should try again.
func (p *serveProc) startOnce() bool {
	t := p.t
	t.Helper()
	p.out = &syncBuf{}
	p.cmd = exec.Command(p.bin, "serve", "--listen", "127.0.0.1:"+p.port, "--data", p.data)
	p.cmd.Env = append(append(os.Environ(), "FILEGATE_ADMIN_PASSWORD="+adminPassword, "FILEGATE_LOG_LEVEL=warn"), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(p.cmd, p.done)
	deadline := time.Now().Add(60 * time.Second)
	serving := false
	for {
		select {
		case <-p.done:
			if p.port != "0" && strings.Contains(p.out.String(), "address already in use") {
				return false
			}
			t.Fatalf("filegate serve exited early:\n%s", p.out.String())
		default:
		}
		// Only after serve says it listens is an answer on the port its own.
		if !serving {
			if m := servingRE.FindStringSubmatch(p.out.String()); m != nil {
				p.port, serving = m[1], true
			}
		}
		if serving {
			if resp, err := http.Get(p.base() + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("filegate serve not ready:\n%s", p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	req, _ := http.NewRequest("OPTIONS", p.base()+"/uploads/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Tus-Version") == "" {
		t.Fatalf("filegate serve does not mount the tus door at /uploads/ (OPTIONS: %s)", resp.Status)
	}
	return true
}

// sigkill kills the process the hard way and waits for it to be gone.
func (p *serveProc) sigkill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *serveProc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Kill()
		<-p.done
	}
}

// restart starts the process again on the same port and data.
func (p *serveProc) restart() { p.start() }

// randomFile writes n random bytes and returns the path and SHA-256.
func randomFile(t *testing.T, n int64) (string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "upload.bin")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rand.Reader, n)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, hex.EncodeToString(h.Sum(nil))
}

// storedFile reads what the server recorded at path, straight from its
// database and blob folder, and returns the recorded and the actual
// SHA-256 of the bytes.
func storedFile(t *testing.T, dbURL, blobRoot, path string) (recorded, actual string, size int64) {
	t.Helper()
	blobs, err := localblob.New(blobRoot)
	if err != nil {
		t.Fatal(err)
	}
	return storedIn(t, dbURL, blobs, path)
}

// blobLeftovers lists what partial uploads and writers left in a blob
// folder.
func blobLeftovers(root string) []string {
	var out []string
	for _, d := range []string{"partial/data", "partial/state", "tmp"} {
		ents, _ := os.ReadDir(filepath.Join(root, d))
		for _, e := range ents {
			out = append(out, d+"/"+e.Name())
		}
	}
	return out
}

// partialBytes returns the size of the largest partial upload in a blob
// folder.
func partialBytes(root string) int64 {
	ents, _ := os.ReadDir(filepath.Join(root, "partial/data"))
	var most int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Size() > most {
			most = fi.Size()
		}
	}
	return most
}

// adminReq sends a tus request as the bootstrap admin.
func adminReq(t *testing.T, method, url string, hdr map[string]string, body io.Reader, n int64) *http.Response {
	t.Helper()
	r, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		r.ContentLength = n
	}
	r.SetBasicAuth("admin", adminPassword)
	r.Header.Set("Tus-Resumable", "1.0.0")
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// startPatchAs sends a PATCH at offset 0 whose body the test feeds through
// the returned writer; the answer (nil on a transport error) arrives on
// the channel.
func startPatchAs(loc, user, pass string) (*io.PipeWriter, chan *http.Response) {
	pr, pw := io.Pipe()
	done := make(chan *http.Response, 1)
	go func() {
		r, _ := http.NewRequest("PATCH", loc, pr)
		r.SetBasicAuth(user, pass)
		r.Header.Set("Tus-Resumable", "1.0.0")
		r.Header.Set("Upload-Offset", "0")
		r.Header.Set("Content-Type", "application/offset+octet-stream")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			pr.CloseWithError(err)
			done <- nil
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp
	}()
	return pw, done
}

// lockRows counts the lease rows of upload id in a PostgreSQL database.
// setLease makes the lease row of upload id, as its holder left it, run
// out d from now (by the database's clock, as the locker counts).
func setLease(t *testing.T, dbURL, id string, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	db, err := model.OpenDB(ctx, model.DBOptions{URL: dbURL, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.NewRaw("UPDATE upload_locks SET expires_ms = (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + ? WHERE id = ?",
		d.Milliseconds(), id).Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("upload %s has %d lease rows, want 1", id, n)
	}
}

func lockRows(t *testing.T, dbURL, id string) int {
	t.Helper()
	ctx := context.Background()
	db, err := model.OpenDB(ctx, model.DBOptions{URL: dbURL, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.NewRaw("SELECT COUNT(*) FROM upload_locks WHERE id = ?", id).Scan(ctx, &n); err != nil {
		t.Fatal(err)
	}
	return n
}
