package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/filegate/filegate/cmd/filegate/proctest"
	"github.com/filegate/filegate/davfs/davtest"
	"github.com/filegate/filegate/gateway/tlstest"
)

// TestServeOverHTTPS starts the real binary with --tls-cert and --tls-key:
// it announces https URLs, WebDAV answers over HTTP/2, and the upload
// command, a separate process trusting the certificate through
// --ca-cert, sends a file through the tus door whose bytes WebDAV
// then serves unchanged. Half a pair is refused at startup.
func TestServeOverHTTPS(t *testing.T) {
	cert := tlstest.Write(t, t.TempDir(), "filegate test")
	in := proctest.Start(t, proctest.Options{Args: []string{"--tls-cert", cert.CertPath, "--tls-key", cert.KeyPath}})
	if !strings.HasPrefix(in.URL, "https://") {
		t.Fatalf("serve announced %s:\n%s", in.URL, in.Logs())
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cert.ClientConfig(), ForceAttemptHTTP2: true}}
	do := func(method, path string, body io.Reader) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, in.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth("admin", "secret-admin")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	if resp, _ := do("MKCOL", "/dav/scans", nil); resp.StatusCode != http.StatusCreated || resp.Proto != "HTTP/2.0" {
		t.Fatalf("MKCOL over TLS: %d %s, want 201 over HTTP/2.0", resp.StatusCode, resp.Proto)
	}

	file := filepath.Join(t.TempDir(), "ecg.bin")
	content := bytes.Repeat([]byte("lead II "), 300_000)
	if err := os.WriteFile(file, content, 0o600); err != nil {
		t.Fatal(err)
	}
	upload := func(extra ...string) ([]byte, error) {
		up := exec.Command(proctest.Binary(t), append([]string{"upload", file, "--to", in.URL + "/dav/scans",
			"--user", "admin", "--password-stdin", "--state", filepath.Join(t.TempDir(), "state.json")}, extra...)...)
		up.Stdin = strings.NewReader("secret-admin\n")
		return up.CombinedOutput()
	}
	if out, err := upload("--ca-cert", file); err == nil || !strings.Contains(string(out), "holds no PEM certificate") {
		t.Fatalf("--ca-cert with a file that is no certificate: %v\n%s", err, out)
	}
	if out, err := upload("--ca-cert", cert.CertPath); err != nil {
		t.Fatalf("filegate upload over TLS: %v\n%s", err, out)
	}
	resp, got := do(http.MethodGet, "/dav/scans/ecg.bin", nil)
	want := sha256.Sum256(content)
	if sum := sha256.Sum256(got); resp.StatusCode != http.StatusOK || sum != want {
		t.Fatalf("GET of the uploaded file: %d, sha256 %s, want %s", resp.StatusCode, hex.EncodeToString(sum[:8]), hex.EncodeToString(want[:8]))
	}

	// rclone, a real WebDAV client, over HTTPS with the certificate as
	// its CA: a tree up and back down, unchanged.
	if _, err := exec.LookPath("rclone"); err == nil {
		src, back := t.TempDir(), t.TempDir()
		davtest.Tree(t, src, 20, 7)
		davtest.Rclone(t, in.URL+"/dav/", "admin", "secret-admin", "--ca-cert", cert.CertPath, "copy", src, ":webdav:tree")
		davtest.Rclone(t, in.URL+"/dav/", "admin", "secret-admin", "--ca-cert", cert.CertPath, "copy", ":webdav:tree", back)
		want, got := davtest.Digests(t, src), davtest.Digests(t, back)
		if len(want) != 20 || len(got) != len(want) {
			t.Fatalf("rclone over TLS: sent %d files, got %d back", len(want), len(got))
		}
		for p, w := range want {
			if got[p] != w {
				t.Errorf("rclone over TLS: %s sent %+v, got back %+v", p, w, got[p])
			}
		}
	} else if os.Getenv("CI") == "true" {
		t.Fatal("rclone is required under CI (make deps installs it)")
	} else {
		t.Log("rclone not installed: its part of the test did not run")
	}

	// A client that does not trust the certificate gets no answer.
	if _, err := http.Get(in.URL + "/healthz"); err == nil {
		t.Fatal("a client without the certificate connected")
	}

	half := exec.Command(proctest.Binary(t), "serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--tls-cert", cert.CertPath)
	if out, err := half.CombinedOutput(); err == nil || !strings.Contains(string(out), "--tls-cert and --tls-key go together") {
		t.Fatalf("serve with --tls-cert alone: %v\n%s", err, out)
	}
}
