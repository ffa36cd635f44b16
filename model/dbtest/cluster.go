package dbtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/filegate/filegate/model"
)

// Cluster is a throwaway PostgreSQL server in a temp folder. Tests that need
// to stop and restart the server (fault injection) start their own with
// StartCluster; everything else shares one through URL.
type Cluster struct {
	Dir  string
	Port int
	bin  string
	cred *syscall.Credential
	cmd  *exec.Cmd
	// done is closed when cmd has exited; a goroutine started with the
	// process owns cmd.Wait, so Start notices an early exit at once and
	// Stop waits on the same channel.
	done chan struct{}
}

type sharedCluster struct {
	once    sync.Once
	url     string
	err     error
	cluster *Cluster
}

var shared sharedCluster

func (s *sharedCluster) adminURL() (string, error) {
	s.once.Do(func() {
		if u := os.Getenv("DATABASE_URL"); u != "" {
			s.url = u
			return
		}
		s.cluster, s.err = StartCluster()
		if s.err == nil {
			s.url = s.cluster.URL("postgres")
		}
	})
	return s.url, s.err
}

func (s *sharedCluster) stop() {
	if s.cluster != nil {
		s.cluster.Remove()
	}
}

// ServerBinDir finds the newest /usr/lib/postgresql/N/bin holding initdb.
// It returns an error naming the fix when PostgreSQL is not installed.
func ServerBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
}

// StartCluster runs initdb and postgres in a new temp folder on a free
// loopback port, as the postgres user when the caller is root (PostgreSQL
// refuses to run as root), with fsync off because the data is thrown away.
func StartCluster() (*Cluster, error) {
	bin, err := ServerBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "filegate-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	initdb := c.command(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"),
		"-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	if err := c.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = c.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	return cmd
}

// pickPort chooses the port of a cluster's first start. Tests replace it
// to force a start onto a port that is already taken.
var pickPort = freePort

// errPortTaken marks a start that failed because postgres could not bind
// its port, the one failure a start on another port can cure.
var errPortTaken = errors.New("postgres could not bind its port")

// Start (re)starts the server and waits until it accepts connections.
//
// The first time it picks a free port, but a port that was free when
// picked can be taken before postgres binds it (by another test binary, or
// as the source port of one of the many client connections tests open),
// so when postgres reports that it could not bind, Start tries again on a
// fresh port, a few times. A restart keeps the port, because clients
// already hold URLs naming it; it retries the bind on that same port for a
// few seconds instead, long enough for whatever briefly held it to let go.
func (c *Cluster) Start() error {
	if c.Port != 0 {
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := c.startOnce()
			if !errors.Is(err, errPortTaken) || time.Now().After(deadline) {
				return err
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	var err error
	for range 5 {
		if c.Port, err = pickPort(); err != nil {
			return err
		}
		if err = c.startOnce(); !errors.Is(err, errPortTaken) {
			return err
		}
	}
	c.Port = 0 // so that a later Start picks afresh too
	return err
}

// startOnce starts postgres on c.Port and waits until it accepts
// connections, at most 30 s. It returns an error wrapping errPortTaken
// when postgres exits because the port is in use, and other errors for
// every other failure.
func (c *Cluster) startOnce() error {
	logPath := filepath.Join(c.Dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o666)
	if err != nil {
		return err
	}
	if c.cred != nil {
		os.Chown(logf.Name(), int(c.cred.Uid), int(c.cred.Gid))
	}
	// The log is appended to over restarts; only what this start wrote
	// says why it failed.
	var logStart int64
	if fi, err := logf.Stat(); err == nil {
		logStart = fi.Size()
	}
	thisLog := func() string {
		b, _ := os.ReadFile(logPath)
		if int64(len(b)) >= logStart {
			b = b[logStart:]
		}
		return string(b)
	}
	cmd := c.command(filepath.Join(c.bin, "postgres"), "-D", filepath.Join(c.Dir, "data"),
		"-p", strconv.Itoa(c.Port), "-k", c.Dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=64MB")
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	logf.Close()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	c.cmd, c.done = cmd, done
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			c.cmd, c.done = nil, nil
			log := thisLog()
			if strings.Contains(log, "could not bind") || strings.Contains(log, "Address already in use") {
				return fmt.Errorf("%w %d: %s", errPortTaken, c.Port, log)
			}
			return fmt.Errorf("postgres exited before it was ready (%v): %s", cmd.ProcessState, log)
		default:
		}
		if c.answers() {
			return nil
		}
		select {
		case <-done: // reported on the next turn
		case <-time.After(50 * time.Millisecond):
		}
	}
	c.Stop()
	return fmt.Errorf("postgres did not become ready within 30s: %s", thisLog())
}

// answers reports whether this cluster's postgres accepts connections on
// c.Port. It asks for the data folder too: whoever took the port before
// our postgres could bind it may be another throwaway PostgreSQL that
// would let us in just the same, and using it would be a silent mix-up.
func (c *Cluster) answers() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	db, err := model.OpenDB(ctx, model.DBOptions{URL: c.URL("postgres"), MaxConns: 1})
	if err != nil {
		return false
	}
	defer db.Close()
	var dataDir string
	if err := db.QueryRowContext(ctx, "SHOW data_directory").Scan(&dataDir); err != nil {
		return false
	}
	return dataDir == filepath.Join(c.Dir, "data")
}

// Stop shuts the server down fast and waits for it to exit.
func (c *Cluster) Stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
	c.cmd, c.done = nil, nil
}

// Remove stops the server and deletes its folder.
func (c *Cluster) Remove() {
	c.Stop()
	os.RemoveAll(c.Dir)
}

// URL is the connection URL of database name on this cluster.
func (c *Cluster) URL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, name)
}

// freePort returns a loopback port that was free a moment ago; Start
// copes with its being taken again before postgres binds it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
