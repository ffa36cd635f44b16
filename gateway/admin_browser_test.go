package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/model/dbtest"
	"github.com/filegate/filegate/policy"
)

// chromium finds the browser, skipping the test without one (failing
// under CI, where .ci/install-deps installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is required under CI (.ci/install-deps installs it)")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// TestAdminPageInBrowser drives the admin page in headless Chromium: an
// admin signs in, grants a group read on a folder through the form (the
// what-if preview shows first), a member's WebDAV GET goes from 403 to
// 200, the admin removes the rule the same way and the GET is 403 again;
// in between, the admin sets alice's quota in the users table.
// The page's screenshot is kept in testdata-artifacts/admin.png.
func TestAdminPageInBrowser(t *testing.T) {
	bin := chromium(t)
	e := newAdmEnv(t, dbtest.Open(t, dbtest.SQLite))
	e.user("alice", false)
	e.apply(policy.Change{Add: [][]string{
		policy.Membership("user:alice", "group:staff"),
		// Staff see that /reports exists, so a refused GET is a 403.
		policy.Grant("group:staff", policy.LevelMetadata, e.reports.ID),
	}})
	if s := e.davGet("alice", "/reports/a.txt"); s != http.StatusForbidden {
		t.Fatalf("GET before the grant: %d, want 403", s)
	}
	// Someone guessed alice's password until her sign-ins were blocked.
	aliceKey, _ := model.SignInKeys("alice", "")
	for range model.DefaultSignInLimits.PerAccount {
		if _, err := e.repo.SignInFailed(context.Background(), model.SignInLimits{}, time.Now(), aliceKey, ""); err != nil {
			t.Fatal(err)
		}
	}

	// A scheduled integrity check found /other/b.txt's bytes gone.
	b, err := e.repo.LiveByPath(context.Background(), "/other/b.txt")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Blobs.Delete(context.Background(), b.BlobKey); err != nil {
		t.Fatal(err)
	}
	if run, err := e.store.CheckOnce(context.Background(), model.ScheduledCheck{Every: time.Hour, Holder: "test"}); err != nil || run.Problems != 1 {
		t.Fatalf("integrity check: %+v, %v", run, err)
	}

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()

	type css = chromedp.CSS
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(css(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	statusChanged := func(prev string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](fmt.Sprintf("document.querySelector('#status').textContent !== %q", prev),
			chromedp.WithPollingTimeout(30*time.Second))
	}

	do("sign in",
		chromedp.Navigate(e.ts.URL+"/admin/"),
		chromedp.WaitVisible(css(`#signin-form input[name=name]`)),
		chromedp.SendKeys(css(`#signin-form input[name=name]`), "root"),
		chromedp.SendKeys(css(`#signin-form input[name=password]`), admPassword),
		chromedp.Click(css(`#signin-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#app`)),
		chromedp.WaitVisible(css(`#rules tbody tr`)),
	)

	do("show the integrity check's damaged files",
		chromedp.Click(css(`#integrity-table tr[data-check] button`)),
		chromedp.WaitVisible(css(`#integrity-damaged li`)),
	)
	if got := text(`#integrity-damaged`); !strings.Contains(got, "/other/b.txt: missing") {
		t.Errorf("the damaged files shown: %q", got)
	}
	do("ask for a check now",
		chromedp.Click(css(`#integrity-start`)),
		statusChanged(""),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('#integrity-table tr[data-check]').length === 2`,
			chromedp.WithPollingTimeout(30*time.Second)),
	)
	if got := text(`#status`); !strings.Contains(got, "Integrity check requested") {
		t.Errorf("status after Check now: %q", got)
	}
	if runs, err := e.repo.IntegrityRuns(context.Background(), 10); err != nil || len(runs) != 2 || runs[0].State != model.IntegrityRunning {
		t.Errorf("runs after Check now: %+v, %v", runs, err)
	}
	do("verify the audit trail",
		chromedp.Click(css(`#audit-verify`)),
		chromedp.Poll[chromedp.Void](`document.querySelector('#audit-result').textContent.startsWith('Intact')`,
			chromedp.WithPollingTimeout(30*time.Second)),
	)

	do("preview the grant",
		chromedp.SendKeys(css(`#f1`), "group:staff"),
		chromedp.SendKeys(css(`#f2`), "level:read"),
		chromedp.SendKeys(css(`#f3`), "/reports"),
		chromedp.Click(css(`#preview-add`)),
		chromedp.WaitEnabled(css(`#apply`)),
	)
	t.Logf("preview: %s", text(`#preview-summary`))
	table := text(`#preview-table tbody`)
	if !strings.Contains(table, "user:alice") || !strings.Contains(table, "/reports/a.txt") || !strings.Contains(table, "allowed") {
		t.Errorf("the preview does not show alice gaining read on /reports/a.txt:\n%s", table)
	}
	if e.authz.Decide(context.Background(), "user:alice", "read", e.aTxt.Lineage).Allowed {
		t.Fatal("the preview applied the change")
	}

	rule := strings.Join(policy.Grant("group:staff", policy.LevelRead, e.reports.ID), ", ")
	ruleButton := css(fmt.Sprintf(`#rules tr[data-rule=%q] button`, rule))
	do("apply the grant",
		chromedp.Click(css(`#apply`)),
		statusChanged(""),
		chromedp.WaitVisible(ruleButton),
	)
	status := text(`#status`)
	if !strings.HasPrefix(status, "Applied") {
		t.Fatalf("status after apply: %q", status)
	}
	if s := e.davGet("alice", "/reports/a.txt"); s != http.StatusOK {
		t.Errorf("GET after the grant: %d, want 200", s)
	}

	do("explain",
		chromedp.SendKeys(css(`#explain-subject`), "alice"),
		chromedp.SendKeys(css(`#explain-object`), "/reports/a.txt"),
		chromedp.Click(css(`#explain-form button[type=submit]`)),
		chromedp.WaitVisible(css(`#explain-result dl`)),
	)
	explained := text(`#explain-result`)
	if !strings.Contains(explained, "allowed") || !strings.Contains(explained, "g, user:alice, group:staff") ||
		!strings.Contains(explained, rule) {
		t.Errorf("explanation lacks the decision or the links:\n%s", explained)
	}

	// A quota through alice's row in the users table: the stored bytes
	// change and the row shows them.
	aliceRow := `#users-table tr[data-user="alice"]`
	do("set alice's quota",
		chromedp.SendKeys(css(aliceRow+` input.quota-size`), "1.5"),
		chromedp.Click(css(aliceRow+` button.quota-set`)),
		statusChanged(status),
		chromedp.Poll[chromedp.Void](fmt.Sprintf("(document.querySelector(%q) || {}).textContent === %q",
			aliceRow+` .quota-text`, "0 B of 1.5 GiB"), chromedp.WithPollingTimeout(30*time.Second)),
	)
	if u, err := e.repo.UserByName(context.Background(), "alice"); err != nil || u.QuotaBytes != 3<<29 {
		t.Errorf("alice's quota after the form: %+v, %v; want 1.5 GiB", u, err)
	}
	status = text(`#status`)

	// The row shows the block; its button ends it.
	if row := text(aliceRow); !strings.Contains(row, "sign-ins blocked until") {
		t.Errorf("alice's row does not show her block: %q", row)
	}
	do("unblock alice",
		chromedp.Click(css(aliceRow+` button.unblock`)),
		statusChanged(status),
		chromedp.Poll[chromedp.Void](fmt.Sprintf("!document.querySelector(%q)", aliceRow+` .sign-in-blocked`),
			chromedp.WithPollingTimeout(30*time.Second)),
	)
	if until, err := e.repo.SignInBlockedUntil(context.Background(), time.Now(), aliceKey); err != nil || !until.IsZero() {
		t.Errorf("alice still blocked until %v after Unblock (%v)", until, err)
	}
	status = text(`#status`)
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	keepScreenshot(t, shot)

	do("preview the removal",
		chromedp.Click(ruleButton),
		chromedp.WaitEnabled(css(`#apply`)),
	)
	table = text(`#preview-table tbody`)
	if !strings.Contains(table, "user:alice") || !strings.Contains(table, "denied") {
		t.Errorf("the removal's preview does not show alice losing read:\n%s", table)
	}
	do("apply the removal",
		chromedp.Click(css(`#apply`)),
		statusChanged(status),
		chromedp.WaitNotPresent(css(fmt.Sprintf(`#rules tr[data-rule=%q]`, rule))),
	)
	if s := e.davGet("alice", "/reports/a.txt"); s != http.StatusForbidden {
		t.Errorf("GET after the removal: %d, want 403", s)
	}
}

// keepScreenshot writes the PNG to testdata-artifacts/admin.png at the
// repository root (ignored by git) and logs where.
func keepScreenshot(t *testing.T, png []byte) {
	t.Helper()
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Errorf("the screenshot is not a PNG (%d bytes)", len(png))
		return
	}
	dir, err := filepath.Abs(filepath.Join("..", "testdata-artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "admin.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}
