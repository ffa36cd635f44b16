package davtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// run runs a client program and fails the test with its output if it
// fails.
func run(t testing.TB, cmd *exec.Cmd) string {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out.String())
	}
	return out.String()
}

// Rclone runs rclone with a throwaway config and the WebDAV backend
// pointed at url (the door's root) as user/pass. Remote paths are written
// ":webdav:path". The owncloud vendor makes rclone send X-OC-Mtime, so
// modification times survive the round trip.
func Rclone(t testing.TB, url, login, pass string, args ...string) string {
	t.Helper()
	bin := NeedTool(t, "rclone")
	dir := t.TempDir()
	obscured := strings.TrimSpace(run(t, exec.Command(bin, "--config", filepath.Join(dir, "rclone.conf"), "obscure", pass)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	full := append([]string{"--config", filepath.Join(dir, "rclone.conf"),
		"--webdav-url", url, "--webdav-user", login, "--webdav-pass", obscured, "--webdav-vendor", "owncloud",
		"--low-level-retries", "1", "--retries", "1"}, args...)
	return run(t, exec.CommandContext(ctx, bin, full...))
}

// Cadaver runs cadaver on url with a script of its commands, logging in
// through a .netrc in a throwaway HOME, and returns what it printed.
func Cadaver(t testing.TB, rawURL, login, pass, script string) string {
	t.Helper()
	bin := NeedTool(t, "cadaver")
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	netrc := fmt.Sprintf("machine %s login %s password %s\n", u.Hostname(), login, pass)
	if err := os.WriteFile(filepath.Join(home, ".netrc"), []byte(netrc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, rawURL)
	cmd.Env = append(os.Environ(), "HOME="+home)
	cmd.Stdin = strings.NewReader(script + "\nquit\n")
	return run(t, cmd)
}

// MountDavfs mounts url through the kernel with davfs2 (configuration
// with buf_size 64, which this kernel needs, and credentials in a secrets
// file) and returns the mount point and a function that unmounts it,
// waiting for davfs2 to finish its uploads; the test's cleanup calls it
// too. It needs root: without it the test is skipped, or fails under
// CI=true.
func MountDavfs(t testing.TB, rawURL, login, pass string) (mnt string, unmount func()) {
	t.Helper()
	NeedTool(t, "mount.davfs")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("a davfs2 mount needs root")
		}
		t.Skip("a davfs2 mount needs root")
	}
	// davfs2 keeps its cache in its own /var/cache/davfs2: a cache_dir
	// inside the test's folders is refused after it drops to its user.
	dir := t.TempDir()
	mnt = filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	secrets := filepath.Join(dir, "secrets")
	if err := os.WriteFile(secrets, []byte(fmt.Sprintf("%s %s %s\n", rawURL, login, pass)), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "davfs2.conf")
	confText := fmt.Sprintf("buf_size 64\nsecrets %s\nask_auth 0\ndelay_upload 0\nuse_locks 1\n", secrets)
	if err := os.WriteFile(conf, []byte(confText), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run(t, exec.CommandContext(ctx, "mount", "-t", "davfs", "-o", "conf="+conf+",uid=0,gid=0", rawURL, mnt))
	mounted := true
	unmount = func() {
		if !mounted {
			return
		}
		mounted = false
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	}
	t.Cleanup(unmount)
	return mnt, unmount
}

// Tree writes n files of random sizes (0 to 64 KiB) and contents under
// root, in nested folders, with modification times on whole seconds in the
// past, and returns their relative paths.
func Tree(t testing.TB, root string, n int, seed uint64) []string {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var paths []string
	for i := range n {
		rel := filepath.Join(fmt.Sprintf("dir%02d", i%7), fmt.Sprintf("sub%d", i%3), fmt.Sprintf("file-%03d.bin", i))
		if i%10 == 0 {
			rel = fmt.Sprintf("top-%03d ünïcødé & space.txt", i)
		}
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		data := make([]byte, r.IntN(64<<10))
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		mt := time.Unix(1500000000+int64(r.IntN(200000000)), 0)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, rel)
	}
	return paths
}

// Digest describes a file for comparison: its SHA-256 and modification
// time in whole seconds.
type Digest struct {
	SHA256  string
	ModTime int64
}

// Digests returns the Digest of every regular file under root by relative
// path.
func Digests(t testing.TB, root string) map[string]Digest {
	t.Helper()
	out := map[string]Digest{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		info, err := f.Stat()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = Digest{SHA256: hex.EncodeToString(h.Sum(nil)), ModTime: info.ModTime().Unix()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
