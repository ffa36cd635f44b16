package proctest_test

import (
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/filegate/filegate/cmd/filegate/proctest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.Cleanup()
	os.Exit(code)
}

func ready(t *testing.T, in *proctest.Instance) int {
	t.Helper()
	resp, err := http.Get(in.URL + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// An instance answers on its port, is gone after Kill, and answers on the
// same port again after Restart; SIGTERM stops it cleanly.
func TestStartKillRestart(t *testing.T) {
	in := proctest.Start(t, proctest.Options{})
	if got := ready(t, in); got != 200 {
		t.Fatalf("/readyz = %d", got)
	}
	in.Kill()
	if got := ready(t, in); got != 0 {
		t.Fatalf("/readyz after kill = %d", got)
	}
	if err := in.Restart(); err != nil {
		t.Fatal(err)
	}
	if got := ready(t, in); got != 200 {
		t.Fatalf("/readyz after restart = %d", got)
	}
	if err := in.Stop(20 * time.Second); err != nil {
		t.Fatalf("stop: %v\n%s", err, in.Logs())
	}
}

// An instance started without a port gets the one serve bound, and a
// restart whose port is briefly held by someone else waits for it rather
// than failing, keeping the URL clients hold.
func TestRestartWaitsForItsPort(t *testing.T) {
	in := proctest.Start(t, proctest.Options{})
	if in.Opts.Port == 0 || in.URL != "http://127.0.0.1:"+strconv.Itoa(in.Opts.Port) {
		t.Fatalf("URL %q, port %d", in.URL, in.Opts.Port)
	}
	url := in.URL
	in.Kill()
	l, err := net.Listen("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatalf("occupy the killed instance's port: %v", err)
	}
	go func() {
		time.Sleep(time.Second)
		l.Close()
	}()
	if err := in.Restart(); err != nil {
		t.Fatal(err)
	}
	if in.URL != url {
		t.Fatalf("restarted at %s, want %s", in.URL, url)
	}
	if got := ready(t, in); got != 200 {
		t.Fatalf("/readyz after restart = %d", got)
	}
	if !strings.Contains(in.Logs(), "address already in use") {
		t.Fatalf("the restart never met the taken port; logs:\n%s", in.Logs())
	}
}
