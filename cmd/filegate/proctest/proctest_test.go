package proctest_test

import (
	"net/http"
	"os"
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
