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
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
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
	// Port is the loopback port to listen on; a free port when 0. A
	// restarted instance keeps its port.
	Port int
	// Args are extra serve flags.
	Args []string
	// Env are extra environment variables (S3 credentials, say).
	Env []string
}

// Instance is one running (or stopped) `filegate serve` process.
type Instance struct {
	// URL is the base URL, http://127.0.0.1:PORT.
	URL string
	// Opts are the options the instance was started with, Port filled in.
	Opts Options

	bin  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	logs bytes.Buffer
	done chan error
}

var servingRE = regexp.MustCompile(`serving on (http://\S+)`)

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
	if opts.Port == 0 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		opts.Port = p
	}
	in := &Instance{Opts: opts, bin: Binary(t), URL: "http://127.0.0.1:" + strconv.Itoa(opts.Port)}
	if err := in.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop(20 * time.Second) })
	return in
}

// Restart starts the process again, on the same port, data and database,
// after Kill or Stop. It returns an error when it is already running or
// does not print its URL within 60 s.
func (in *Instance) Restart() error {
	in.mu.Lock()
	running := in.cmd != nil
	in.mu.Unlock()
	if running {
		return errors.New("proctest: instance is running")
	}
	o := in.Opts
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
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		seen := false
		for sc.Scan() {
			line := sc.Text()
			in.mu.Lock()
			in.logs.WriteString(line + "\n")
			in.mu.Unlock()
			if !seen && servingRE.MatchString(line) {
				seen = true
				close(found)
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	in.mu.Lock()
	in.cmd, in.done = cmd, done
	in.mu.Unlock()
	select {
	case <-found:
		return nil
	case err := <-done:
		in.mu.Lock()
		in.cmd = nil
		in.mu.Unlock()
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

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
