package gateway_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	filegate "github.com/filegate/filegate"
	"github.com/filegate/filegate/davfs/davtest"
	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/blob/s3blob"
	"github.com/filegate/filegate/model/blob/s3test"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

// TestDAVLitmus runs the litmus conformance suite against the whole
// server (authentication, authorizer, WebDAV door) on PostgreSQL, with the
// bytes in a local folder and in S3 (versitygw), and requires every test
// of basic, copymove, props, locks and http to pass.
func TestDAVLitmus(t *testing.T) {
	for _, blobs := range []string{"local", "s3"} {
		t.Run(blobs, func(t *testing.T) {
			var env *davEnv
			if blobs == "s3" {
				env = newS3DAVEnv(t, dbtest.Open(t, dbtest.Postgres))
			} else {
				env = newDAVEnv(t, dbtest.Open(t, dbtest.Postgres), gateway.Config{})
			}
			env.user("litmus", "litmus-password")
			env.apply(policy.Grant(policy.User("litmus"), policy.LevelFull, env.root.ID))
			env.folder(env.root, "conformance")
			for _, line := range davtest.Litmus(t, env.url("/conformance/"), "litmus", "litmus-password") {
				t.Log(line)
			}
		})
	}
}

// newS3DAVEnv is newDAVEnv with the bytes in a bucket of a versitygw of
// the test's own, as `filegate serve --blob-url s3://…` wires it.
func newS3DAVEnv(t *testing.T, db *bun.DB) *davEnv {
	t.Helper()
	ctx := context.Background()
	s3 := s3test.StartT(t)
	s3test.SetEnv(t)
	cfg, err := s3blob.ParseURL(s3.URL(s3.NewBucket(t), "filegate"))
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := s3blob.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	authz, err := policy.New(ctx, db, filegate.CasbinModel, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	repo := model.NewRepo(db)
	store := model.NewStore(repo, blobs, log)
	srv, err := gateway.New(gateway.Config{}, gateway.Deps{Store: store, Authz: authz, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	srv.HandleDoor(gateway.DAVPrefix+"/", srv.DAVHandler())
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	root, err := repo.LiveByPath(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	return &davEnv{t: t, ts: ts, db: db, repo: repo, store: store, authz: authz, root: root}
}

// TestDAVRclone copies a tree of 200 files up with rclone's WebDAV
// backend and back down, and requires identical SHA-256 and modification
// times.
func TestDAVRclone(t *testing.T) {
	davtest.NeedTool(t, "rclone")
	env := newDAVEnv(t, dbtest.Open(t, dbtest.Postgres), gateway.Config{})
	env.user("rc", "rclone-password")
	env.apply(policy.Grant(policy.User("rc"), policy.LevelFull, env.root.ID))
	src, back := t.TempDir(), t.TempDir()
	paths := davtest.Tree(t, src, 200, 42)
	davtest.Rclone(t, env.url("/"), "rc", "rclone-password", "copy", src, ":webdav:tree")
	davtest.Rclone(t, env.url("/"), "rc", "rclone-password", "copy", ":webdav:tree", back)
	want, got := davtest.Digests(t, src), davtest.Digests(t, back)
	if len(want) != len(paths) || len(got) != len(want) {
		t.Fatalf("files: wrote %d, uploaded %d, downloaded %d", len(paths), len(want), len(got))
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: sent %+v, got back %+v", p, w, got[p])
		}
	}
	// The modification times were stored, not just restored by rclone.
	n, err := env.repo.LiveByPath(context.Background(), "/tree/"+filepath.ToSlash(paths[1]))
	if err != nil || n.ModTime.Unix() != want[paths[1]].ModTime {
		t.Fatalf("stored mod time: %v %v, want %d", err, n, want[paths[1]].ModTime)
	}
}

// TestDAVCadaver puts and gets a file with cadaver.
func TestDAVCadaver(t *testing.T) {
	davtest.NeedTool(t, "cadaver")
	env := newDAVEnv(t, dbtest.Open(t, dbtest.SQLite), gateway.Config{})
	env.user("cad", "cadaver-password")
	env.apply(policy.Grant(policy.User("cad"), policy.LevelFull, env.root.ID))
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.txt"), filepath.Join(dir, "out.txt")
	content := strings.Repeat("cadaver round trip\n", 1000)
	if err := os.WriteFile(in, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	script := "mkcol docs\ncd docs\nput " + in + " note.txt\nls\nget note.txt " + out + "\n"
	log := davtest.Cadaver(t, env.url("/"), "cad", "cadaver-password", script)
	got, err := os.ReadFile(out)
	if err != nil || string(got) != content {
		t.Fatalf("cadaver get: %v (%d bytes)\n%s", err, len(got), log)
	}
	n, err := env.repo.LiveByPath(context.Background(), "/docs/note.txt")
	if err != nil || n.Size != int64(len(content)) {
		t.Fatalf("stored: %v %+v", err, n)
	}
}

// TestDAVDavfs2 mounts the door through the kernel with davfs2, writes and
// reads files through it, and checks them through the store.
func TestDAVDavfs2(t *testing.T) {
	env := newDAVEnv(t, dbtest.Open(t, dbtest.SQLite), gateway.Config{})
	env.user("kern", "kernel-password")
	env.apply(policy.Grant(policy.User("kern"), policy.LevelFull, env.root.ID))
	env.file(env.folder(env.root, "from-server"), "hello.txt", "written by the server\n")
	mnt, unmount := davtest.MountDavfs(t, env.url("/"), "kern", "kernel-password")

	got, err := os.ReadFile(filepath.Join(mnt, "from-server", "hello.txt"))
	if err != nil || string(got) != "written by the server\n" {
		t.Fatalf("read through the kernel: %v %q", err, got)
	}
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	if err := os.MkdirAll(filepath.Join(mnt, "from-kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "from-kernel", "big.bin"), []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "from-server", "hello.txt"), filepath.Join(mnt, "from-kernel", "hello.txt")); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(mnt, "from-kernel"))
	if err != nil || len(entries) != 2 {
		t.Fatalf("listing through the kernel: %v %v", err, entries)
	}
	unmount() // davfs2 uploads what is left before it lets go

	ctx := context.Background()
	n, err := env.repo.LiveByPath(ctx, "/from-kernel/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	r, err := env.store.Open(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	if string(b) != big {
		t.Fatalf("stored big.bin has %d bytes", len(b))
	}
	if _, err := env.repo.LiveByPath(ctx, "/from-kernel/hello.txt"); err != nil {
		t.Fatalf("renamed file: %v", err)
	}
}
