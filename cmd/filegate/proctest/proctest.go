// Package proctest runs the real filegate binary for integration tests:
// it builds cmd/filegate once per test binary, starts `filegate serve`
// processes on loopback, and lets a test kill, stop and restart them on
// the same port, as fault, multi-instance and soak tests need.
//
// A test package that uses it calls Cleanup from its TestMain after the
// tests ran, so the built binary is removed.
package proctest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// Binary returns the path of the filegate binary built from this source
// tree, building it on first use. A failed build fails t.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		pkg := filepath.Dir(filepath.Dir(file)) // cmd/filegate
		build.dir, build.err = os.MkdirTemp("", "filegate-bin-")
		if build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "filegate")
		cmd := exec.Command("go", "build", "-o", build.bin, ".")
		cmd.Dir = pkg
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// Cleanup removes the binary Binary built. Call it from TestMain after
// m.Run.
func Cleanup() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

// Options configure one `filegate serve` process. Every field maps to a
// flag or FILEGATE_* variable of serve; Env is appended last, so it wins.
type Options struct {
	// Data is the data folder (--data); a new temp folder when empty.
	Data string
	// DatabaseURL is FILEGATE_DATABASE_URL; empty means SQLite in Data.
	DatabaseURL string
	// BlobURL is FILEGATE_BLOB_URL; empty means Data/blobs.
	BlobURL string
	// AdminPassword is the first admin's password; "secret-admin" when empty.
	AdminPassword string
	// Port is the loopback port to listen on. When it is 0 the first
	// start lets serve bind port 0 and takes the port serve reports in
	// its "serving on" line, so no other process can take the port
	// between choosing and binding it. A restarted instance keeps its
	// port.
	Port int
	// Args are extra serve flags.
	Args []string
	// Env are extra environment variables (S3 credentials, say).
	Env []string
}

// Instance is one running (or stopped) `filegate serve` process.
type Instance struct {
	// URL is the base URL, http://127.0.0.1:PORT (https with --tls-cert).
	URL string
	// Opts are the options the instance was started with, Port filled in.
	Opts Options

	bin  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	logs bytes.Buffer
	done chan error
}

var servingRE = regexp.MustCompile(`serving on (https?://\S+)`)

// Start runs `filegate serve` with opts and waits until it prints its URL
// (at most 60 s). The process is stopped with SIGTERM when the test ends,
// and with SIGKILL by the kernel if the test binary dies first.
func Start(t testing.TB, opts Options) *Instance {
	t.Helper()
	if opts.Data == "" {
		opts.Data = t.TempDir()
	}
	if opts.AdminPassword == "" {
		opts.AdminPassword = "secret-admin"
	}
	in := &Instance{Opts: opts, bin: Binary(t)}
	if opts.Port != 0 {
		in.URL = "http://127.0.0.1:" + strconv.Itoa(opts.Port)
	}
	if err := in.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop(20 * time.Second) })
	return in
}

// errPortTaken marks a start that failed because serve could not bind its
// port.
var errPortTaken = errors.New("proctest: the port is taken")

// Restart starts the process again, on the same port, data and database,
// after Kill or Stop. It returns an error when it is already running or
// does not print its URL within 60 s.
//
// The port must stay the same, since clients and other instances hold
// the URL. Something else can hold it for a moment (a client connection
// that got it as its source port, say), so when serve exits because the
// address is in use, Restart tries the same port again for up to 10 s
// before it gives up.
func (in *Instance) Restart() error {
	in.mu.Lock()
	running := in.cmd != nil
	in.mu.Unlock()
	if running {
		return errors.New("proctest: instance is running")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := in.startOnce()
		if !errors.Is(err, errPortTaken) || in.Opts.Port == 0 || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startOnce starts serve on in.Opts.Port, or on a port of the kernel's
// choosing that it then records in Opts.Port and URL when that is 0, and
// waits until serve prints its URL. It returns an error wrapping
// errPortTaken when serve exits because its address is in use.
func (in *Instance) startOnce() error {
	o := in.Opts
	in.mu.Lock()
	logStart := in.logs.Len()
	in.mu.Unlock()
	args := append([]string{"serve", "--listen", "127.0.0.1:" + strconv.Itoa(o.Port), "--data", o.Data}, o.Args...)
	cmd := exec.Command(in.bin, args...)
	cmd.Env = append(os.Environ(),
		"FILEGATE_DATABASE_URL="+o.DatabaseURL,
		"FILEGATE_BLOB_URL="+o.BlobURL,
		"FILEGATE_ADMIN_PASSWORD="+o.AdminPassword,
		"FILEGATE_LOG_FORMAT=text",
	)
	cmd.Env = append(cmd.Env, o.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = &lockedWriter{mu: &in.mu, w: &in.logs}
	if err := cmd.Start(); err != nil {
		return err
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		seen := false
		for sc.Scan() {
			line := sc.Text()
			in.mu.Lock()
			in.logs.WriteString(line + "\n")
			in.mu.Unlock()
			if m := servingRE.FindStringSubmatch(line); !seen && m != nil {
				seen = true
				found <- m[1]
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	in.mu.Lock()
	in.cmd, in.done = cmd, done
	in.mu.Unlock()
	select {
	case url := <-found:
		if in.Opts.Port == 0 {
			u, err := neturl.Parse(url)
			port, perr := 0, err
			if err == nil {
				port, perr = strconv.Atoi(u.Port())
			}
			if perr != nil || port == 0 {
				in.Kill()
				return fmt.Errorf("proctest: serve printed a URL without a port: %q", url)
			}
			in.Opts.Port, in.URL = port, u.Scheme+"://127.0.0.1:"+strconv.Itoa(port)
		}
		return nil
	case err := <-done:
		in.mu.Lock()
		in.cmd = nil
		this := in.logs.String()[logStart:]
		in.mu.Unlock()
		if strings.Contains(this, "address already in use") {
			return fmt.Errorf("%w: serve exited (%v):\n%s", errPortTaken, err, in.Logs())
		}
		return fmt.Errorf("proctest: serve exited before serving (%v):\n%s", err, in.Logs())
	case <-time.After(60 * time.Second):
		in.Kill()
		return fmt.Errorf("proctest: serve did not start within 60s:\n%s", in.Logs())
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (in *Instance) Kill() {
	in.mu.Lock()
	cmd, done := in.cmd, in.done
	in.cmd = nil
	in.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Stop sends SIGTERM and waits up to grace for a clean exit, then kills.
// It returns the process's exit error, or an error saying it had to be
// killed.
func (in *Instance) Stop(grace time.Duration) error {
	in.mu.Lock()
	cmd, done := in.cmd, in.done
	in.cmd = nil
	in.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		return err
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("proctest: serve did not stop within %v of SIGTERM", grace)
	}
}

// Signal sends sig to the running process without waiting; it is a no-op
// when the instance is not running.
func (in *Instance) Signal(sig os.Signal) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd != nil {
		in.cmd.Process.Signal(sig)
	}
}

// Wait waits up to d for the process to exit by itself and returns its
// exit error; it returns an error when it is still running after d.
func (in *Instance) Wait(d time.Duration) error {
	in.mu.Lock()
	cmd, done := in.cmd, in.done
	in.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case err := <-done:
		in.mu.Lock()
		in.cmd = nil
		in.mu.Unlock()
		return err
	case <-time.After(d):
		return fmt.Errorf("proctest: still running after %v", d)
	}
}

// PID returns the process id, or 0 when the instance is not running.
func (in *Instance) PID() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil {
		return 0
	}
	return in.cmd.Process.Pid
}

// Logs returns everything the process printed so far, over all restarts.
func (in *Instance) Logs() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.logs.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// FreePort returns a loopback TCP port that was free a moment ago, for a
// test that must choose a port before it starts a process on it (nginx's
// configuration, say). Another process can take the port before the child
// binds it, so prefer letting the child bind port 0 where it can, as
// Start does.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
