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

// Start (re)starts the server on its port, picking a free one the first
// time, and waits until it accepts connections.
func (c *Cluster) Start() error {
	if c.Port == 0 {
		port, err := freePort()
		if err != nil {
			return err
		}
		c.Port = port
	}
	logf, err := os.OpenFile(filepath.Join(c.Dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o666)
	if err != nil {
		return err
	}
	if c.cred != nil {
		os.Chown(logf.Name(), int(c.cred.Uid), int(c.cred.Gid))
	}
	c.cmd = c.command(filepath.Join(c.bin, "postgres"), "-D", filepath.Join(c.Dir, "data"),
		"-p", strconv.Itoa(c.Port), "-k", c.Dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=64MB")
	c.cmd.Stdout = logf
	c.cmd.Stderr = logf
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	logf.Close()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		db, err := model.OpenDB(ctx, model.DBOptions{URL: c.URL("postgres"), MaxConns: 1})
		cancel()
		if err == nil {
			db.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(c.Dir, "postgres.log"))
	c.Stop()
	return fmt.Errorf("postgres did not become ready: %s", log)
}

// Stop shuts the server down fast and waits for it to exit.
func (c *Cluster) Stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	c.cmd = nil
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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
