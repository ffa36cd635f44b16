package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob/localblob"
	"github.com/filegate/filegate/model/dbtest"
)

// startServe runs `filegate serve` on a free port and returns its base
// URL; the process gets SIGTERM when the test ends.
func startServe(t *testing.T, bin string, env []string) string {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), env...)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := regexp.MustCompile(`serving on (https?://\S+)`).FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case base := <-found:
		return base
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not start:\n%s", stderr.String())
	}
	return ""
}

// TestPolicyChangeAcrossTwoServers runs two real `filegate serve`
// processes on one PostgreSQL database and blob folder. A grant and its
// revocation made through server A's admin API (or, while serve does not
// mount it, through `filegate policy` on the database) show in WebDAV
// decisions on server B. The time B took is logged.
func TestPolicyChangeAcrossTwoServers(t *testing.T) {
	bin := buildBinary(t)
	ctx := context.Background()
	data := t.TempDir()
	url := dbtest.URL(t, dbtest.Postgres)
	t.Setenv("FILEGATE_DATA", data)
	t.Setenv("FILEGATE_DATABASE_URL", url)
	t.Setenv("FILEGATE_SERVER", "")
	cli := func(stdin string, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if err := run(ctx, args, strings.NewReader(stdin), &out, &errb); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}
	cli("root-password\n", "user", "add", "root", "--admin", "--password-stdin")
	cli("alice-password\n", "user", "add", "alice", "--password-stdin")
	db, err := model.OpenDB(ctx, model.DBOptions{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	blobs, err := localblob.New(data + "/blobs")
	if err != nil {
		t.Fatal(err)
	}
	store := model.NewStore(model.NewRepo(db), blobs, nil)
	root, err := store.Repo.LiveByPath(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	reports, err := store.Repo.CreateFolder(ctx, root, "reports", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Put(ctx, model.PutRequest{Parent: reports, Name: "a.txt", Body: strings.NewReader("hello")}); err != nil {
		t.Fatal(err)
	}
	// Staff see /reports exists, so a refused GET is 403 rather than 404.
	cli("", "policy", "add", "g, user:alice, group:staff", "g2, group:staff, level:metadata, /reports")

	a := startServe(t, bin, nil)
	b := startServe(t, bin, nil)
	get := func(base string) int {
		req, _ := http.NewRequest("GET", base+"/dav/reports/a.txt", nil)
		req.SetBasicAuth("alice", "alice-password")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	wait := func(base string, want int) time.Duration {
		t.Helper()
		start := time.Now()
		for got := get(base); got != want; got = get(base) {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("GET on %s is still %d, want %d", base, got, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}
	if s := get(b); s != http.StatusForbidden {
		t.Fatalf("GET on B before the grant: %d, want 403", s)
	}

	change := func(op, line string) {
		resp, err := http.Get(a + "/admin/session")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			t.Log("serve does not mount the admin API yet; changing the policy through the database instead")
			cli("", "policy", op, line)
			return
		}
		if os.Getenv("FILEGATE_API_KEY") == "" {
			t.Setenv("FILEGATE_API_KEY", strings.TrimSpace(cli("", "apikey", "create", "root", "--label", "test")))
		}
		cli("", "policy", op, "--server", a, line)
		if want := map[string]int{"add": 200, "remove": 403}[op]; get(a) != want {
			t.Errorf("A's next request after %s: want %d", op, want)
		}
	}
	change("add", "g2, group:staff, level:read, /reports")
	t.Logf("the grant reached server B after %v", wait(b, http.StatusOK))
	change("remove", "g2, group:staff, level:read, /reports")
	t.Logf("the revocation reached server B after %v", wait(b, http.StatusForbidden))
}
