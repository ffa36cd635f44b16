package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/filegate/filegate/cmd/filegate/proctest"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob/localblob"
	"github.com/filegate/filegate/model/blob/s3test"
	"github.com/filegate/filegate/model/dbtest"
)

// TestMain runs the tests through dbtest (which stops the shared
// PostgreSQL), then removes proctest's binary and s3test's shared server.
func TestMain(m *testing.M) {
	code := dbtest.Main(m)
	proctest.Cleanup()
	s3test.Cleanup()
	os.Exit(code)
}

// buildBinary compiles the real filegate binary once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "filegate")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// TestServeFirstStart starts the real binary as `make run` does, on both
// databases: it must create the admin, print the doors' URLs and the
// credential, answer /readyz to that credential, and stop cleanly on
// SIGTERM.
func TestServeFirstStart(t *testing.T) {
	bin := buildBinary(t)
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			data := t.TempDir()
			cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--data", data)
			cmd.Env = append(os.Environ(), "FILEGATE_DATABASE_URL="+dbURL(t, kind), "FILEGATE_ADMIN_PASSWORD=")
			stdout, _ := cmd.StdoutPipe()
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()

			lines := make(chan string, 64)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			var base, password string
			seen := map[string]bool{}
			deadline := time.After(30 * time.Second)
			for base == "" || password == "" {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("serve exited early:\n%s", stderr.String())
					}
					if m := regexp.MustCompile(`serving on (https?://\S+)`).FindStringSubmatch(l); m != nil {
						base = m[1]
					}
					if m := regexp.MustCompile(`as admin with password: (\S+)`).FindStringSubmatch(l); m != nil {
						password = m[1]
					}
					for _, door := range []string{"/dav/", "/uploads/", "/api/v1/", "/admin/"} {
						if strings.HasSuffix(strings.TrimSpace(l), door) {
							seen[door] = true
						}
					}
				case <-deadline:
					t.Fatalf("no URL and password printed:\n%s", stderr.String())
				}
			}
			if len(seen) != 4 {
				t.Errorf("door URLs printed: %v", seen)
			}
			req, _ := http.NewRequest("GET", base+"/readyz", nil)
			req.SetBasicAuth("admin", password)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("/readyz = %d", resp.StatusCode)
			}
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("serve did not exit cleanly on SIGTERM: %v\n%s", err, stderr.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatal("serve did not stop within 20s of SIGTERM")
			}
			if strings.Contains(stderr.String(), password) {
				t.Fatal("the admin password reached the log")
			}
		})
	}
}

func dbURL(t *testing.T, kind dbtest.Kind) string {
	if kind == dbtest.SQLite {
		return ""
	}
	return dbtest.URL(t, kind)
}

// TestAdminCommands drives the account commands in-process against a
// database with no server running.
func TestAdminCommands(t *testing.T) {
	for _, kind := range dbtest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			ctx := context.Background()
			data := t.TempDir()
			t.Setenv("FILEGATE_DATA", data)
			t.Setenv("FILEGATE_DATABASE_URL", dbURL(t, kind))
			runOK := func(stdin string, args ...string) string {
				t.Helper()
				var out, errb bytes.Buffer
				if err := run(ctx, args, strings.NewReader(stdin), &out, &errb); err != nil {
					t.Fatalf("%v: %v\n%s", args, err, errb.String())
				}
				return out.String()
			}
			runOK("", "migrate")
			runOK("alice-password\n", "user", "add", "alice", "--password-stdin")
			runOK("boss-password\n", "user", "add", "boss", "--admin", "--password-stdin")
			runOK("", "group", "add", "radiology")
			runOK("", "group", "add-member", "radiology", "alice")
			if out := runOK("", "group", "list"); !regexp.MustCompile(`radiology\s+alice`).MatchString(out) {
				t.Fatalf("group list:\n%s", out)
			}
			out := runOK("", "user", "list")
			if !regexp.MustCompile(`boss\s+\S+\s+true`).MatchString(out) || !regexp.MustCompile(`alice\s+\S+\s+false`).MatchString(out) {
				t.Fatalf("user list does not show boss as the only admin:\n%s", out)
			}
			key := strings.TrimSpace(runOK("", "apikey", "create", "alice", "--label", "ci"))
			if !strings.HasPrefix(key, "fgk_") {
				t.Fatalf("apikey create printed %q", key)
			}
			runOK("", "group", "remove-member", "radiology", "alice")
			if out := runOK("", "group", "list"); strings.Contains(out, "alice") {
				t.Fatalf("alice still a member:\n%s", out)
			}
			runOK("", "user", "disable", "alice")

			// Quotas: set, shown by list, removed; a bad size changes nothing.
			if out := runOK("", "user", "quota", "alice", "2GiB"); !strings.Contains(out, "2147483648 bytes") {
				t.Fatalf("user quota printed %q", out)
			}
			if out := runOK("", "user", "list"); !regexp.MustCompile(`alice\s+\S+\s+false\s+true\s+2\.0 GiB\s+0 B\s`).MatchString(out) ||
				!regexp.MustCompile(`boss\s+\S+\s+true\s+false\s+none\s+0 B\s`).MatchString(out) {
				t.Fatalf("user list does not show the quotas:\n%s", out)
			}
			for bad, want := range map[string]string{"alice -5GiB": "cannot be negative", "alice -- -1": "cannot be negative",
				"alice lots": "not a size", "alice 10XB": "unknown unit", "alice 9EiB": "more than the largest size",
				"alice": "takes 2 argument", "nobody 1GiB": "nobody: not found"} {
				var errb bytes.Buffer
				err := run(ctx, append([]string{"user", "quota"}, strings.Fields(bad)...), strings.NewReader(""), io.Discard, &errb)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("user quota %s: %v, want an error saying %q", bad, err, want)
				}
			}
			putAs(t, data, "alice", "a.bin", 3000)
			if out := runOK("", "user", "list"); !regexp.MustCompile(`alice\s+\S+\s+false\s+true\s+2\.0 GiB\s+2\.9 KiB\s`).MatchString(out) {
				t.Fatalf("user list after the refused sizes and alice's file:\n%s", out)
			}
			runOK("", "user", "quota", "alice", "none")
			if out := runOK("", "user", "list"); !regexp.MustCompile(`alice\s+\S+\s+false\s+true\s+none\s+2\.9 KiB\s`).MatchString(out) {
				t.Fatalf("alice's quota was not removed:\n%s", out)
			}

			// unblock ends a block that failed sign-ins set.
			db, err := model.OpenDB(ctx, model.DBOptions{URL: os.Getenv("FILEGATE_DATABASE_URL"), DataDir: data})
			if err != nil {
				t.Fatal(err)
			}
			repo := model.NewRepo(db)
			account, _ := model.SignInKeys("alice", "")
			block := func() {
				t.Helper()
				for range model.DefaultSignInLimits.PerAccount {
					if _, err := repo.SignInFailed(ctx, model.SignInLimits{}, time.Now(), account, ""); err != nil {
						t.Fatal(err)
					}
				}
				if until, err := repo.SignInBlockedUntil(ctx, time.Now(), account); err != nil || until.IsZero() {
					t.Fatalf("alice not blocked after %d failures: %v", model.DefaultSignInLimits.PerAccount, err)
				}
			}
			open := func(how string) {
				t.Helper()
				if until, err := repo.SignInBlockedUntil(ctx, time.Now(), account); err != nil || !until.IsZero() {
					t.Fatalf("alice still blocked until %v after %s (%v)", until, how, err)
				}
			}
			block()
			if out := runOK("", "user", "list"); !regexp.MustCompile(`(?m)^alice\s.*\sblocked until \S+\s*$`).MatchString(out) ||
				!regexp.MustCompile(`(?m)^boss\s.*\sopen\s*$`).MatchString(out) {
				t.Fatalf("user list does not show alice's block:\n%s", out)
			}
			if out := runOK("", "user", "unblock", "Alice"); !strings.Contains(out, "forgotten") {
				t.Fatalf("user unblock printed %q", out)
			}
			open("unblock")
			block()
			runOK("a-new-password\n", "user", "passwd", "alice", "--password-stdin")
			open("a new password")
			db.Close()

			var errb bytes.Buffer
			if err := run(ctx, []string{"user", "add", "alice", "--password-stdin"}, strings.NewReader("x-password\n"), io.Discard, &errb); err == nil {
				t.Fatal("adding an existing user succeeded")
			}
			if err := run(ctx, []string{"user", "add", "carol"}, strings.NewReader(""), io.Discard, &errb); err == nil {
				t.Fatal("user add without --password-stdin succeeded")
			}
		})
	}
}

// putAs stores a file of size bytes in the root folder as user's, on the
// database and blob folder the commands use.
func putAs(t *testing.T, data, user, name string, size int) {
	t.Helper()
	ctx := context.Background()
	db, err := model.OpenDB(ctx, model.DBOptions{URL: os.Getenv("FILEGATE_DATABASE_URL"), DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	blobs, err := localblob.New(filepath.Join(data, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	repo := model.NewRepo(db)
	u, err := repo.UserByName(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	root, err := repo.LiveByPath(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	store := model.NewStore(repo, blobs, slog.New(slog.DiscardHandler))
	body := strings.NewReader(strings.Repeat("x", size))
	if _, _, err := store.Put(ctx, model.PutRequest{Parent: root, Name: name, Body: body, Actor: u.ID}); err != nil {
		t.Fatal(err)
	}
}
