package main

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/filegate/filegate/cmd/filegate/proctest"
)

// nginxConfig is what testdata/nginx.conf, the example the README
// quotes, is rendered with.
type nginxConfig struct {
	// Test adds the test-only lines: foreground, paths under the prefix,
	// and an X-Upstream header naming the instance that answered.
	Test bool
	// Listen is nginx's address.
	Listen string
	// Backends are the instances' host:port.
	Backends []string
}

// startNginx runs Debian's nginx in the foreground in front of backends
// with the example configuration and returns its base URL. A missing
// nginx fails the test under CI=true and skips it otherwise. nginx needs
// its port in the configuration, so the port is picked free beforehand;
// when something takes it in between, nginx is started again on another.
func startNginx(t *testing.T, backends []string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
		if _, err = os.Stat(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("nginx is required under CI (.ci/install-deps installs it): %v", err)
			}
			t.Skipf("nginx missing (.ci/install-deps installs it): %v", err)
		}
	}
	tmpl, err := template.ParseFiles(filepath.Join("testdata", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		base, portTaken := startNginxOn(t, bin, tmpl, backends, attempt < 3)
		if !portTaken {
			return base
		}
		t.Logf("nginx's port was taken before it could bind it; attempt %d", attempt+1)
	}
}

// startNginxOn is one attempt of startNginx. When nginx exits because its
// port is in use and mayRetry is set, it reports portTaken instead of
// failing the test.
func startNginxOn(t *testing.T, bin string, tmpl *template.Template, backends []string, mayRetry bool) (base string, portTaken bool) {
	t.Helper()
	port, err := proctest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var conf bytes.Buffer
	cfg := nginxConfig{Test: true, Listen: "127.0.0.1:" + strconv.Itoa(port), Backends: backends}
	if err := tmpl.Execute(&conf, cfg); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	errLog := filepath.Join(dir, "error.log")
	cmd := exec.Command(bin, "-e", errLog, "-p", dir, "-c", confPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	logs := func() string {
		b, _ := os.ReadFile(errLog)
		return out.String() + string(b)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT) // graceful
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("nginx error log:\n%s", logs())
		}
	})
	base = "http://" + cfg.Listen
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			if mayRetry && strings.Contains(logs(), "Address already in use") {
				return "", true
			}
			t.Fatalf("nginx exited:\n%s\n%s", logs(), conf.String())
		default:
		}
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			// X-Upstream shows nginx answered, not an instance that
			// happened to get the port nginx could not bind.
			if resp.StatusCode == 200 && resp.Header.Get("X-Upstream") != "" {
				return base, false
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not answer /healthz within 20s:\n%s", logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNginxRoundRobin puts nginx, configured as the README's example,
// in front of three instances on one PostgreSQL database and one S3
// bucket, with plain round robin and no sticky sessions, and repeats the
// cross-instance checks through it: a WebDAV PUT read back from another
// instance, a lock honoured by the others, a tus upload whose PATCHes
// land on different instances, and a MOVE whose Destination names the
// proxy. Then one instance is killed, and every request through nginx
// still succeeds.
func TestNginxRoundRobin(t *testing.T) {
	cl := startCluster(t, 3, 2*time.Second, "--trust-forwarded-headers")
	var backends []string
	for _, n := range cl.nodes {
		backends = append(backends, strings.TrimPrefix(n.URL, "http://"))
	}
	base := startNginx(t, backends)
	c := newRR(t, "admin", adminPass, base)

	t.Run("dav put get", func(t *testing.T) { c.t = t; checkPutGet(t, c, "proxied", 9<<20+77) })
	t.Run("lock", func(t *testing.T) { c.t = t; checkLock(t, c, "proxied") })
	t.Run("tus", func(t *testing.T) {
		c.t = t
		create := c.do("POST", "/uploads/", map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": "1",
			"Upload-Metadata": "filename " + b64("probe.bin") + ",folder " + b64("/proxied")}, nil)
		want(t, "tus create", create, 201)
		if loc := create.header.Get("Location"); !strings.HasPrefix(loc, base+"/uploads/") {
			t.Fatalf("tus Location %q is not behind the proxy %s", loc, base)
		}
		checkTus(t, c, "proxied", 12<<20+9, 4)
	})
	t.Run("move", func(t *testing.T) {
		c.t = t
		mv := c.do("MOVE", "/dav/proxied/scan.bin", map[string]string{"Destination": base + "/dav/proxied/moved.bin"}, nil)
		want(t, "MOVE with the proxy's host in Destination", mv, 201, 204)
		get := c.do("GET", "/dav/proxied/moved.bin", nil, nil)
		want(t, "GET after MOVE", get, 200)
		if get.backend == mv.backend || len(get.body) != 9<<20+77 {
			t.Fatalf("GET on %s after MOVE on %s: %d bytes", get.backend, mv.backend, len(get.body))
		}
	})
	t.Run("one instance dies", func(t *testing.T) {
		c.t = t
		cl.nodes[0].Kill()
		dead := backends[0]
		want(t, "MKCOL", c.do("MKCOL", "/dav/after-kill", nil, nil), 201)
		retried := 0
		for i := range 6 {
			body := randomBytes(64<<10+i, uint64(100+i))
			p := "/dav/after-kill/f" + strconv.Itoa(i)
			for _, r := range []reply{c.do("PUT", p, nil, body), c.do("GET", p, nil, nil)} {
				want(t, r.header.Get("X-Upstream")+" "+p, r, 200, 201, 204)
				if strings.Contains(r.backend, dead) {
					retried++ // nginx tried the dead instance first, then the next
				}
				if r.status == 200 && sum(r.body) != sum(body) {
					t.Fatalf("GET %s: %d bytes, want %d", p, len(r.body), len(body))
				}
			}
		}
		body := randomBytes(3<<20, 200)
		loc := tusCreate(t, c, "after-kill", "upload.bin", len(body))
		want(t, "tus PATCH", tusPatch(c, loc, 0, body[:1<<20]), 204)
		want(t, "tus PATCH", tusPatch(c, loc, 1<<20, body[1<<20:]), 204)
		if get := c.do("GET", "/dav/after-kill/upload.bin", nil, nil); get.status != 200 || sum(get.body) != sum(body) {
			t.Fatalf("GET of the upload: %d, %d bytes", get.status, len(get.body))
		}
		t.Logf("with %s dead, every request succeeded; %d went to it first and were passed on", dead, retried)
	})
}
