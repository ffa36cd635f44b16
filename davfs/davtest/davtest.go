// Package davtest drives real WebDAV clients (litmus, rclone, cadaver,
// davfs2) against a server in tests. Each helper fails the test with what
// the client printed; a missing client skips the test, or fails it under
// CI=true, where `make deps` has installed it.
package davtest

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// NeedTool returns the path of a client program, skipping the test (or
// failing it under CI=true) when it is not installed.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI (make deps installs it): %v", name, err)
		}
		t.Skipf("%s not installed (run `make deps`): %v", name, err)
	}
	return p
}

// LitmusSuites are the suites filegate must pass in full.
var LitmusSuites = []string{"basic", "copymove", "props", "locks", "http"}

// Litmus runs `litmus -k` against url (a collection, with a trailing
// slash) as user/pass and fails the test unless every test of every
// suite passed with no failure, skip or warning. It returns the summary
// lines.
func Litmus(t testing.TB, url, user, pass string) []string {
	t.Helper()
	bin := NeedTool(t, "litmus")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-k", url, user, pass)
	cmd.Dir = t.TempDir() // litmus writes debug.log and child.log there
	cmd.Env = append(os.Environ(), "TESTS="+strings.Join(LitmusSuites, " "))
	out, _ := cmd.CombinedOutput()
	failures, summary := ParseLitmus(out)
	var lines []string
	for _, s := range LitmusSuites {
		line, ok := summary[s]
		if !ok {
			failures = append(failures, "suite "+s+" did not run to its summary")
			continue
		}
		lines = append(lines, line)
	}
	if len(failures) > 0 {
		t.Fatalf("litmus failures:\n%s\n\nfull output:\n%s", strings.Join(failures, "\n"), out)
	}
	return lines
}

var litmusSummary = regexp.MustCompile("<- summary for `([a-z0-9]+)': of ([0-9]+) tests run: ([0-9]+) passed, ([0-9]+) failed")

// ParseLitmus returns the lines of litmus output reporting a failed,
// skipped or warned test, and the summary line of each suite.
func ParseLitmus(out []byte) (failures []string, summary map[string]string) {
	summary = map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "FAIL"), strings.Contains(line, "SKIPPED"), strings.Contains(line, "WARNING"),
			strings.Contains(line, "were skipped"), strings.Contains(line, "was skipped"):
			failures = append(failures, strings.TrimSpace(line))
		case litmusSummary.MatchString(line):
			m := litmusSummary.FindStringSubmatch(line)
			summary[m[1]] = strings.TrimPrefix(line, "<- ")
			if m[4] != "0" || m[2] != m[3] {
				failures = append(failures, line)
			}
		}
	}
	return failures, summary
}

// Do sends one request to url, lets auth add credentials (nil for none)
// and hdr add headers, and returns the status, the headers and the body.
func Do(t testing.TB, method, url string, body io.Reader, hdr map[string]string, auth func(*http.Request)) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != nil {
		auth(req)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}
