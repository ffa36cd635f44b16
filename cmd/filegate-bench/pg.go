package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
)

// pgServer is the throwaway PostgreSQL cluster filegate/pg runs on.
//
// dbtest.StartCluster makes the cluster but starts postgres with
// -c fsync=off, and command-line settings beat ALTER SYSTEM, so a restart
// through its API keeps fsync off. The harness therefore lets dbtest do
// initdb, stops dbtest's postmaster and starts its own on the same data
// folder and port with durable settings, as a production server would run.
type pgServer struct {
	cluster *dbtest.Cluster
	proc    *proc
	sup     *supervisor
	// Settings is what the report prints about durability.
	Settings string
	Version  string
}

func startPG(ctx context.Context, sup *supervisor, logDir string) (*pgServer, error) {
	c, err := dbtest.StartCluster()
	if err != nil {
		return nil, err
	}
	c.Stop()
	p := &pgServer{cluster: c, sup: sup}
	bin, err := dbtest.ServerBinDir()
	if err != nil {
		c.Remove()
		return nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			c.Remove()
			return nil, fmt.Errorf("postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	p.proc, err = sup.start("postgres", filepath.Join(logDir, "postgres.log"), spawnOpts{dir: c.Dir, cred: cred},
		filepath.Join(bin, "postgres"), "-D", filepath.Join(c.Dir, "data"),
		"-p", strconv.Itoa(c.Port), "-k", c.Dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "full_page_writes=on",
		"-c", "max_connections=300", "-c", "shared_buffers=128MB")
	if err != nil {
		c.Remove()
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err = p.exec(ctx, "SELECT 1")
		if err == nil {
			break
		}
		if p.proc.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			p.close()
			return nil, fmt.Errorf("postgres not ready: %v: %s", err, p.proc.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var fsync, sc, version string
	if err := p.query(ctx, "SHOW fsync", &fsync); err != nil {
		p.close()
		return nil, err
	}
	p.query(ctx, "SHOW synchronous_commit", &sc)
	p.query(ctx, "SHOW server_version", &version)
	p.Settings = fmt.Sprintf("fsync=%s, synchronous_commit=%s", fsync, sc)
	p.Version = strings.Fields(version + " ")[0]
	return p, nil
}

// withDB runs fn on a one-connection handle to the admin database.
func (p *pgServer) withDB(ctx context.Context, fn func(ctx context.Context, db *bun.DB) error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	db, err := model.OpenDB(ctx, model.DBOptions{URL: p.cluster.URL("postgres"), MaxConns: 1})
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(ctx, db)
}

func (p *pgServer) exec(ctx context.Context, q string) error {
	return p.withDB(ctx, func(ctx context.Context, db *bun.DB) error {
		_, err := db.ExecContext(ctx, q)
		return err
	})
}

func (p *pgServer) query(ctx context.Context, q string, dst *string) error {
	return p.withDB(ctx, func(ctx context.Context, db *bun.DB) error {
		return db.QueryRowContext(ctx, q).Scan(dst)
	})
}

// newDatabase creates an empty database and returns its URL.
func (p *pgServer) newDatabase(ctx context.Context, name string) (string, error) {
	p.exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	if err := p.exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return p.cluster.URL(name), nil
}

// dropDatabase removes a database after its workload, best effort.
func (p *pgServer) dropDatabase(name string) {
	p.exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

// close stops postgres (SIGINT is its fast shutdown) and deletes the
// cluster's folder.
func (p *pgServer) close() {
	if p == nil {
		return
	}
	p.sup.stop(p.proc, syscall.SIGINT, 10*time.Second)
	p.cluster.Remove()
}
