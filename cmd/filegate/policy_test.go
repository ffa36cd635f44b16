package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	filegate "github.com/filegate/filegate"
	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob/localblob"
	"github.com/filegate/filegate/policy"
)

// TestPolicyCommands drives `filegate policy` straight on the database
// and through a running server's admin API with an API key: the same
// checks, answers and audit trail both ways.
func TestPolicyCommands(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	t.Setenv("FILEGATE_DATA", data)
	t.Setenv("FILEGATE_DATABASE_URL", "")
	t.Setenv("FILEGATE_SERVER", "")
	try := func(stdin string, args ...string) (string, error) {
		t.Helper()
		var out, errb bytes.Buffer
		err := run(ctx, args, strings.NewReader(stdin), &out, &errb)
		return out.String(), err
	}
	runOK := func(args ...string) string {
		t.Helper()
		out, err := try("", args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out
	}
	if _, err := try("root-password\n", "user", "add", "root", "--admin", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	if _, err := try("alice-password\n", "user", "add", "alice", "--password-stdin"); err != nil {
		t.Fatal(err)
	}

	// A folder to grant on, and a server on the same database.
	db, err := model.OpenDB(ctx, model.DBOptions{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	repo := model.NewRepo(db)
	root, err := repo.LiveByPath(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	reports, err := repo.CreateFolder(ctx, root, "reports", "")
	if err != nil {
		t.Fatal(err)
	}

	// Straight on the database.
	runOK("policy", "add", "g", "user:alice", "group:staff")
	out := runOK("policy", "what-if", "add", "g2, group:staff, level:read, /reports")
	if !strings.Contains(out, "2 decision(s) would change") || !strings.Contains(out, "user:alice  read    /reports  denied  allowed") {
		t.Errorf("what-if:\n%s", out)
	}
	runOK("policy", "add", "g2", "group:staff", "level:read", "/reports")
	if out := runOK("policy", "list", "--ptype", "g2"); strings.TrimSpace(out) != "g2, group:staff, level:read, "+reports.ID+"  # /reports" {
		t.Errorf("list:\n%s", out)
	}
	out = runOK("policy", "explain", "alice", "read", "/reports")
	for _, want := range []string{"allowed: user:alice read /reports", "rule: p, level:read, *, (stat|read)",
		"via:  g, user:alice, group:staff", "via:  g2, group:staff, level:read, " + reports.ID} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	if _, err := try("", "policy", "remove", "g, user:root, role:admin"); err == nil || !strings.Contains(err.Error(), "no administrator") {
		t.Errorf("removing the last admin: %v", err)
	}
	if _, err := try("", "policy", "add", "g2", "anyone", "level:read", "/reports"); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("a public grant without --force: %v", err)
	}
	if _, err := try("", "policy", "add", "g2", "group:staff", "level:nope", "/reports"); err == nil {
		t.Error("an invalid line was accepted")
	}
	csvPath := filepath.Join(t.TempDir(), "policy.csv")
	runOK("policy", "export", csvPath)
	exported, err := os.ReadFile(csvPath)
	if err != nil || !strings.Contains(string(exported), "g2, group:staff, level:read, "+reports.ID) {
		t.Fatalf("export: %v\n%s", err, exported)
	}

	// Through a server, with an admin's API key.
	blobs, err := localblob.New(filepath.Join(data, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	authz, err := policy.New(ctx, db, filegate.CasbinModel, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	srv, err := gateway.New(gateway.Config{}, gateway.Deps{Store: model.NewStore(repo, blobs, log), Authz: authz, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.MountAdmin(gateway.AdminDeps{Policy: authz}); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	_, key, err := repo.CreateAPIKey(ctx, "root", "cli", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := try("", "policy", "list", "--server", ts.URL); err == nil {
		t.Error("--server without an API key worked")
	}
	t.Setenv("FILEGATE_API_KEY", key)
	runOK("policy", "remove", "--server", ts.URL, "g2", "group:staff", "level:read", "/reports")
	if out := runOK("policy", "explain", "--server", ts.URL, "alice", "read", "/reports"); !strings.HasPrefix(out, "denied") {
		t.Errorf("explain after the removal:\n%s", out)
	}
	if out := runOK("policy", "import", "--server", ts.URL, csvPath); !strings.Contains(out, "1 added") {
		t.Errorf("import: %s", out)
	}
	if out := runOK("policy", "export", "--server", ts.URL); sortedLines(out) != sortedLines(string(exported)) {
		t.Errorf("export after re-import differs:\n%s\n---\n%s", out, exported)
	}

	// Both paths wrote the audit trail, each under its own subject.
	var subjects []string
	if err := db.NewSelect().Table("audit").Column("subject").Where("door = ?", "admin").Where("action = ?", "policy.change").
		Scan(ctx, &subjects); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(subjects, " ")
	if !strings.Contains(joined, "cli") || !strings.Contains(joined, "user:root") {
		t.Errorf("audit subjects of policy changes: %q", subjects)
	}
}

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
