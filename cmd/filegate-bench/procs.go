package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// supervisor owns every process the harness starts. Each child gets its own
// process group (so helpers it forks die with it) and SIGKILL from the kernel
// when the harness dies; killAll covers the orderly and the interrupted exit.
type supervisor struct {
	mu    sync.Mutex
	procs map[int]*proc
}

// proc is one running server.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

func newSupervisor() *supervisor { return &supervisor{procs: map[int]*proc{}} }

// spawnOpts tune how a server is started.
type spawnOpts struct {
	env  []string
	dir  string
	cred *syscall.Credential
}

// start runs name with args, its output going to logPath.
func (s *supervisor) start(name, logPath string, o spawnOpts, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	if o.cred != nil {
		os.Chown(logPath, int(o.cred.Uid), int(o.cred.Gid))
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = o.dir
	cmd.Env = append(os.Environ(), o.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: o.cred}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	s.mu.Lock()
	s.procs[cmd.Process.Pid] = p
	s.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// pid is the server's process id, whose RSS the harness reads.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logTail returns the last lines of the server's log, for error messages.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	s := strings.TrimSpace(string(b))
	if len(s) > 600 {
		s = "…" + s[len(s)-600:]
	}
	return s
}

// stop asks the process group to end with sig, then kills it after grace.
func (s *supervisor) stop(p *proc, sig syscall.Signal, grace time.Duration) {
	if p == nil {
		return
	}
	syscall.Kill(-p.pid(), sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
	// Helpers in the group may outlive the leader.
	syscall.Kill(-p.pid(), syscall.SIGKILL)
	s.mu.Lock()
	delete(s.procs, p.pid())
	s.mu.Unlock()
}

// killAll kills every process group still registered, at once.
func (s *supervisor) killAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pid, p := range s.procs {
		syscall.Kill(-pid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
		delete(s.procs, pid)
	}
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// errNotReady says a server never answered its readiness probe.
var errNotReady = errors.New("server not ready")

// waitReady polls url until ok accepts the status, the process exits or the
// timeout passes.
func waitReady(ctx context.Context, p *proc, url, user, pass string, ok func(int) bool, timeout time.Duration) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%w: %s exited (%v): %s", errNotReady, p.name, p.err, p.logTail())
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if ok(resp.StatusCode) {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%w: %s after %s (last: %s): %s", errNotReady, url, timeout, last, p.logTail())
}
