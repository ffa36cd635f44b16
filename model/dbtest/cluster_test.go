package dbtest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/filegate/filegate/model"
)

// startTestCluster starts a cluster of the test's own, failing the test
// under CI=true and skipping it otherwise when PostgreSQL is missing.
func startTestCluster(t *testing.T) *Cluster {
	t.Helper()
	if _, err := ServerBinDir(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	c, err := StartCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Remove)
	return c
}

// ping opens the cluster's admin database and runs a query on it.
func ping(t *testing.T, c *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := model.OpenDB(ctx, model.DBOptions{URL: c.URL("postgres"), MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.NewRaw("SELECT 1").Scan(ctx, &n); err != nil || n != 1 {
		t.Fatalf("SELECT 1 = %d, %v", n, err)
	}
}

// A first start whose port was taken between picking and binding moves to
// another port instead of failing.
func TestStartMovesOffATakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	picks := 0
	pickPort = func() (int, error) {
		picks++
		if picks == 1 {
			return taken, nil
		}
		return freePort()
	}
	t.Cleanup(func() { pickPort = freePort })

	start := time.Now()
	c := startTestCluster(t)
	if c.Port == taken || picks < 2 {
		t.Fatalf("cluster on port %d after %d picks; port %d was taken", c.Port, picks, taken)
	}
	t.Logf("moved from port %d to %d in %v", taken, c.Port, time.Since(start))
	ping(t, c)
}

// A restart whose port is briefly held by someone else waits for it
// rather than moving, because clients hold URLs naming the port.
func TestRestartWaitsForItsPort(t *testing.T) {
	c := startTestCluster(t)
	port := c.Port
	c.Stop()
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("occupy the stopped cluster's port: %v", err)
	}
	go func() {
		time.Sleep(time.Second)
		l.Close()
	}()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if c.Port != port {
		t.Fatalf("restarted on port %d, want %d", c.Port, port)
	}
	ping(t, c)
	log, _ := os.ReadFile(filepath.Join(c.Dir, "postgres.log"))
	if !strings.Contains(string(log), "could not bind") {
		t.Fatalf("the restart never met the taken port; log:\n%s", log)
	}
}
