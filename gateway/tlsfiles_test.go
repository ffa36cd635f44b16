package gateway_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/filegate/filegate/gateway"
	"github.com/filegate/filegate/gateway/tlstest"
	"github.com/filegate/filegate/model/dbtest"
)

// TestServesHTTPSAndReloadsItsCertificate runs the server over TLS on
// 127.0.0.1: it speaks HTTP/2 to a client that trusts its certificate,
// sends HSTS, refuses plain HTTP and untrusting clients, picks up a renewed
// certificate without a restart, and keeps serving the one it has when
// the files are replaced by something that does not load.
func TestServesHTTPSAndReloadsItsCertificate(t *testing.T) {
	dir := t.TempDir()
	first := tlstest.Write(t, dir, "first")
	logs := &syncBuffer{}
	certs, err := gateway.LoadCertFiles(first.CertPath, first.KeyPath, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	env := newTestServer(t, dbtest.Open(t, dbtest.SQLite), "", gateway.Config{TLS: certs.TLSConfig()}, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- env.srv.Serve(ctx, l) }()
	defer func() {
		cancel()
		<-served
	}()
	url := "https://" + l.Addr().String() + "/healthz"

	// get connects afresh, trusting only c, and returns the answer's
	// protocol and the certificate the server showed.
	get := func(c tlstest.Cert) (string, string, error) {
		tr := &http.Transport{TLSClientConfig: c.ClientConfig(), ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
		if err != nil {
			return "", "", err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /healthz over TLS: %d", resp.StatusCode)
		}
		if hsts := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(hsts, "max-age=") {
			t.Fatalf("Strict-Transport-Security %q over TLS", hsts)
		}
		return resp.Proto, resp.TLS.PeerCertificates[0].Subject.CommonName, nil
	}

	proto, cn, err := get(first)
	if err != nil || proto != "HTTP/2.0" || cn != "first" {
		t.Fatalf("first GET: %s from %q, %v; want HTTP/2.0 from \"first\"", proto, cn, err)
	}
	if resp, err := http.Get("http://" + l.Addr().String() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP to the TLS port: %d, want 400", resp.StatusCode)
		}
	}

	// A renewal replaces both files; new connections get the new one.
	renewed := tlstest.Write(t, t.TempDir(), "renewed")
	replace(t, renewed.CertPath, first.CertPath)
	replace(t, renewed.KeyPath, first.KeyPath)
	renewed.CertPath, renewed.KeyPath = first.CertPath, first.KeyPath
	// The files are looked at once a second at most: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, cn, err = get(renewed)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil || cn != "renewed" {
		t.Fatalf("after the renewal: %q, %v; want the renewed certificate", cn, err)
	}
	if _, _, err := get(first); err == nil {
		t.Fatal("a client trusting only the old certificate still connects")
	}

	// Files that do not load leave the renewed certificate in use.
	if err := os.WriteFile(first.CertPath, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, cn, err := get(renewed); err != nil || cn != "renewed" {
		t.Fatalf("after a broken renewal: %q, %v; want the renewed certificate still", cn, err)
	}
	if !strings.Contains(logs.String(), "do not load") {
		t.Fatalf("no warning about the broken files in the log:\n%s", logs.String())
	}
}

// replace moves src over dst, as a renewal tool does.
func replace(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.Rename(src, dst); err != nil {
		t.Fatal(err)
	}
}
