// Package s3test gives tests a real S3 server: versitygw on its posix
// backend in a temp folder, listening on a free loopback port, the way
// dbtest gives them PostgreSQL.
//
// Most tests share one server per test binary through Shared and get a
// fresh bucket from NewBucket; a test package that does so calls Main from
// its TestMain (or Cleanup after another harness's Main) so the server is
// stopped and its folder removed at the end.
// Tests that stop and restart the server (outage tests) start their own
// with Start. The server gets SIGKILL from the kernel if the test binary
// dies first, so no process outlives the tests.
//
// versitygw is looked up in PATH and in $(go env GOPATH)/bin; `make deps`
// installs it. When it is missing, tests fail under CI=true and are
// skipped otherwise, saying how to install it.
package s3test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Credentials and region of every server the package starts. They are
// throwaway test values, not secrets.
const (
	AccessKey = "filegate-test"
	SecretKey = "filegate-test-secret"
	Region    = "us-east-1"
)

// Install is the command that installs the pinned versitygw.
const Install = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// Server is a running versitygw on a posix folder.
type Server struct {
	// Endpoint is the server's base URL, http://127.0.0.1:PORT.
	Endpoint string
	// Dir is the folder holding one subfolder per bucket.
	Dir string

	bin  string
	log  string // versitygw's output, removed by Remove
	port int
	cmd  *exec.Cmd
	done chan struct{}
	own  bool // Dir was created by Start and is removed by Remove
}

type sharedServer struct {
	once sync.Once
	srv  *Server
	err  error
}

var (
	shared        sharedServer
	bucketCounter atomic.Int64
)

// Main runs the tests and then removes the shared server, if one was
// started. Call it from TestMain: os.Exit(s3test.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	Cleanup()
	return code
}

// Cleanup removes the shared server, if one was started. It is Main
// without running the tests, for a TestMain that runs them through
// another harness's Main (dbtest.Main, say) and must call m.Run once.
func Cleanup() {
	if shared.srv != nil {
		shared.srv.Remove()
	}
}

// Binary finds versitygw in PATH or in $(go env GOPATH)/bin. It returns an
// error naming the install command when it is in neither.
func Binary() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	for _, dir := range gopathBins() {
		p := filepath.Join(dir, "versitygw")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("versitygw is not in PATH or GOPATH/bin; install it with `%s` (or `make deps`)", Install)
}

func gopathBins() []string {
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	var dirs []string
	for _, p := range filepath.SplitList(gopath) {
		if p != "" {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	return dirs
}

// skipOrFail skips t with the reason, or fails it under CI=true.
func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("s3test: versitygw is required under CI: %v", err)
	}
	t.Skipf("s3test: S3 tests skipped: %v", err)
}

// Shared returns the server shared by the tests of this binary, starting
// it on first use. A missing versitygw skips t (fails it under CI=true).
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() { shared.srv, shared.err = Start("") })
	if shared.err != nil {
		skipOrFail(t, shared.err)
	}
	return shared.srv
}

// StartT starts a server of the test's own in a temp folder, removed when
// the test ends. A missing versitygw skips t (fails it under CI=true).
func StartT(t testing.TB) *Server {
	t.Helper()
	s, err := Start("")
	if err != nil {
		skipOrFail(t, err)
	}
	t.Cleanup(s.Remove)
	return s
}

// Start runs versitygw on dir (a new temp folder when dir is "") on a free
// loopback port and waits until it answers. It returns an error when the
// binary is missing or the server does not come up.
func Start(dir string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, Dir: dir}
	if dir == "" {
		if s.Dir, err = os.MkdirTemp("", "filegate-s3-"); err != nil {
			return nil, err
		}
		s.own = true
	}
	if err := s.Restart(); err != nil {
		s.Remove()
		return nil, err
	}
	return s, nil
}

// pickPort chooses the port of a server's first start. Tests replace it
// to force a start onto a port that is already taken.
var pickPort = freePort

// errPortTaken marks a start that failed because versitygw could not bind
// its port, the one failure another try can cure.
var errPortTaken = errors.New("s3test: versitygw could not bind its port")

// Restart starts the server again on the same port and folder after
// Stop (or starts it the first time) and waits until it answers.
//
// The first time it picks a free port, but a port that was free when
// picked can be taken before versitygw binds it (by another test binary,
// or as the source port of one of the many client connections tests
// open), so when versitygw exits because the port is in use, Restart
// tries again on a fresh port, a few times. A later Restart keeps the
// port: clients made by Client and blob URLs from URL name Endpoint, and
// tests restart the server under a running filegate that must find it
// again. It retries the bind on that same port for a few seconds instead,
// long enough for whatever briefly held it to let go.
func (s *Server) Restart() error {
	if s.cmd != nil {
		return errors.New("s3test: server is running")
	}
	if s.port != 0 {
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := s.startOnce()
			if !errors.Is(err, errPortTaken) || time.Now().After(deadline) {
				return err
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	var err error
	for range 5 {
		port, perr := pickPort()
		if perr != nil {
			return perr
		}
		s.setPort(port)
		if err = s.startOnce(); !errors.Is(err, errPortTaken) {
			return err
		}
		os.Remove(s.log)
	}
	s.setPort(0) // so that a later Restart picks afresh too
	return err
}

// setPort moves the server's port and Endpoint to port.
func (s *Server) setPort(port int) {
	s.port = port
	s.Endpoint = "http://127.0.0.1:" + strconv.Itoa(port)
}

// startOnce starts versitygw on s.port and waits until it listens there
// and answers, at most 20 s. It returns an error wrapping errPortTaken
// when versitygw exits because the port is in use.
func (s *Server) startOnce() error {
	s.log = filepath.Join(os.TempDir(), fmt.Sprintf("filegate-vgw-%d.log", s.port))
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, "--port", "127.0.0.1:"+strconv.Itoa(s.port), "--quiet", "--keep-alive",
		"posix", s.Dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+AccessKey, "ROOT_SECRET_ACCESS_KEY="+SecretKey,
		"VGW_REGION="+Region)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("s3test: start versitygw: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(s.done)
	// A short timeout, because until versitygw listens whoever else holds
	// the port may accept the connection and never answer.
	probe := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			s.cmd = nil
			log, _ := os.ReadFile(logf.Name())
			if strings.Contains(strings.ToLower(string(log)), "address already in use") {
				return fmt.Errorf("%w %d: %s", errPortTaken, s.port, log)
			}
			return fmt.Errorf("s3test: versitygw exited: %s", log)
		default:
		}
		// Only an answer from a port versitygw itself listens on counts;
		// another server that took the port would answer just as well.
		if listensOn(cmd.Process.Pid, s.port) {
			if resp, err := probe.Get(s.Endpoint + "/"); err == nil {
				resp.Body.Close()
				return nil // any answer (403 without a signature) means it serves
			}
		}
		select {
		case <-s.done: // reported on the next turn
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.Stop()
	log, _ := os.ReadFile(logf.Name())
	return fmt.Errorf("s3test: versitygw did not answer within 20s: %s", log)
}

// listensOn reports whether process pid has a TCP socket listening on
// 127.0.0.1:port (or on every address), read from /proc: the sockets
// among its open files matched against the listening entries of its
// network namespace. Where /proc cannot be read it reports true and
// leaves the answer to the HTTP probe alone.
func listensOn(pid, port int) bool {
	tcp, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return true
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return true
	}
	mine := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	// Columns: sl local_address rem_address st ... inode; the address is
	// hex in host byte order, state 0A is LISTEN.
	suffix := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(tcp), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "0A" || !strings.HasSuffix(f[1], suffix) || !mine[f[9]] {
			continue
		}
		switch strings.TrimSuffix(f[1], suffix) {
		case "0100007F", "7F000001", "00000000":
			return true
		}
	}
	return false
}

// Stop kills the server and waits for it to exit; the folder stays, so
// Restart brings the same buckets back.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// Remove stops the server and deletes its folder if Start created it.
func (s *Server) Remove() {
	s.Stop()
	if s.log != "" {
		os.Remove(s.log)
	}
	if s.own {
		os.RemoveAll(s.Dir)
	}
}

// Client returns an S3 client for the server with the test credentials,
// path-style addressing and a small retry budget.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	})
}

// NewBucket creates a bucket with a unique name for the test.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("fg-%d-%d", os.Getpid(), bucketCounter.Add(1))
	if err := s.CreateBucket(context.Background(), name); err != nil {
		t.Fatalf("s3test: %v", err)
	}
	return name
}

// CreateBucket creates the named bucket.
func (s *Server) CreateBucket(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	return nil
}

// URL is the blob URL filegate takes for bucket and prefix on this
// server: s3://bucket/prefix?endpoint=…&region=…&path_style=true.
func (s *Server) URL(bucket, prefix string) string {
	q := url.Values{"endpoint": {s.Endpoint}, "region": {Region}, "path_style": {"true"}}
	u := url.URL{Scheme: "s3", Host: bucket, Path: "/" + strings.Trim(prefix, "/"), RawQuery: q.Encode()}
	return u.String()
}

// SetEnv points the standard AWS environment variables at this server's
// credentials for the rest of the test (it uses t.Setenv, so t must not
// be parallel).
func SetEnv(t testing.TB) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", SecretKey)
	t.Setenv("AWS_REGION", Region)
}

// Env returns the same variables as KEY=VALUE pairs for child processes.
func Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + AccessKey, "AWS_SECRET_ACCESS_KEY=" + SecretKey, "AWS_REGION=" + Region}
}

// freePort returns a loopback port that was free a moment ago; Restart
// copes with its being taken again before versitygw binds it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
