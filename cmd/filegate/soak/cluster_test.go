package soak

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	filegate "github.com/filegate/filegate"
	"github.com/filegate/filegate/cmd/filegate/proctest"
	"github.com/filegate/filegate/migrations"
	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// plan is how long the soak runs and how often it kills an instance.
type plan struct {
	clients  int
	duration time.Duration
	killEach time.Duration
	// down is how long a killed instance stays down before it restarts,
	// so that clients see refused connections and move to the other.
	down time.Duration
}

func planFor() plan {
	if os.Getenv("FILEGATE_CHAOS") == "long" {
		return plan{clients: 16, duration: 10 * time.Minute, killEach: 2 * time.Minute, down: 2 * time.Second}
	}
	return plan{clients: 16, duration: 36 * time.Second, killEach: 10 * time.Second, down: time.Second}
}

// secrets collects every credential the run creates or sends, for the
// secret scan at the end.
type secrets struct {
	mu   sync.Mutex
	list map[string]string // secret → what it is
}

func (s *secrets) add(what string, vals ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.list == nil {
		s.list = map[string]string{}
	}
	for _, v := range vals {
		if len(v) >= 8 { // shorter strings would match by chance
			s.list[v] = what
		}
	}
}

// addCredential records a whole fgk_/fgt_ credential and its secret part
// (the id part is public: it names the key or token in logs and audit
// subjects).
func (s *secrets) addCredential(what, prefix, cred string) {
	s.add(what, cred)
	if _, secret, ok := model.ParseSecret(prefix, cred); ok {
		s.add(what+" (secret part)", secret)
	}
}

// addAuthorization records an Authorization header value and its
// credential part.
func (s *secrets) addAuthorization(h string) {
	s.add("Authorization header", h)
	if _, cred, ok := strings.Cut(h, " "); ok {
		s.add("Authorization credential", cred)
	}
}

// cluster is two serve processes on one database and one blob folder.
type cluster struct {
	dbURL   string
	blobURL string
	env     []string
	inst    [2]*proctest.Instance
	// up[i] is false while instance i is killed.
	up    [2]atomic.Bool
	kills atomic.Int64
	// peakRSS is the highest VmHWM (KiB) seen of any instance process.
	peakRSS atomic.Int64
	// restartTimes are how long each restart took to serve again.
	mu           sync.Mutex
	restartTimes []time.Duration
	// rssTrace is the resident set (MiB) of both instances every 30 s,
	// to show that it does not grow with the run.
	rssTrace []string
}

func randomSecret(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// account is one client's user with its credentials and folder.
type account struct {
	name, password, apiKey string
	folder                 *model.Node
}

// setup migrates the database and creates the admin, one user per client
// with a password and an API key, and a folder per user on which the user
// has full access. It runs before any instance starts, so that no
// bootstrap admin is generated.
func setup(t *testing.T, ctx context.Context, dbURL string, n int, sec *secrets) (adminPassword string, accts []*account) {
	t.Helper()
	db, err := model.OpenDB(ctx, model.DBOptions{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := migrations.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	repo := model.NewRepo(db)
	authz, err := policy.New(ctx, db, filegate.CasbinModel, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	adminPassword = "adm-" + randomSecret(18)
	sec.add("admin password", adminPassword)
	if _, err := repo.CreateUser(ctx, "admin", adminPassword); err != nil {
		t.Fatal(err)
	}
	change := policy.Change{Add: [][]string{policy.Membership(policy.User("admin"), policy.AdminRole)}}
	root, err := repo.LiveByPath(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		a := &account{name: fmt.Sprintf("soak%02d", i), password: "pw-" + randomSecret(18)}
		sec.add("password of "+a.name, a.password)
		if _, err := repo.CreateUser(ctx, a.name, a.password); err != nil {
			t.Fatal(err)
		}
		_, a.apiKey, err = repo.CreateAPIKey(ctx, a.name, "soak", nil)
		if err != nil {
			t.Fatal(err)
		}
		sec.addCredential("API key of "+a.name, model.APIKeyPrefix, a.apiKey)
		if a.folder, err = repo.CreateFolder(ctx, root, a.name, ""); err != nil {
			t.Fatal(err)
		}
		change.Add = append(change.Add, policy.Grant(policy.User(a.name), policy.Level(model.LevelFull), a.folder.ID))
		accts = append(accts, a)
	}
	if err := authz.Apply(ctx, change); err != nil {
		t.Fatal(err)
	}
	return adminPassword, accts
}

// start runs both instances.
func (c *cluster) start(t *testing.T, adminPassword string) {
	t.Helper()
	for i := range c.inst {
		c.inst[i] = proctest.Start(t, proctest.Options{
			DatabaseURL: c.dbURL, BlobURL: c.blobURL, Env: c.env, AdminPassword: adminPassword,
			// A dead holder's upload lock lasts this long; short, so a
			// resumed tus upload waits seconds rather than 15.
			Args: []string{"--upload-lock-lease", "3s", "--shutdown-grace", "5s"},
		})
		c.up[i].Store(true)
	}
}

// base returns the URL of instance i.
func (c *cluster) base(i int) string { return c.inst[i].URL }

// sampleRSS records the peak resident set of every running instance.
func (c *cluster) sampleRSS() {
	for _, in := range c.inst {
		if kib := vmHWM(in.PID()); kib > c.peakRSS.Load() {
			c.peakRSS.Store(kib)
		}
	}
}

// vmHWM returns the process's peak resident set size in KiB from
// /proc/PID/status, or 0 when it cannot be read.
func vmHWM(pid int) int64 { return procStatus(pid, "VmHWM:") }

// procStatus reads one KiB figure of /proc/PID/status.
func procStatus(pid int, field string) int64 {
	if pid == 0 {
		return 0
	}
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// chaos kills one instance (alternating) every p.killEach until ctx ends,
// keeps it down for p.down, and restarts it on the same port. It samples
// the memory of both instances every second.
func (c *cluster) chaos(ctx context.Context, t *testing.T, p plan) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	next := time.Now().Add(p.killEach)
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c.sampleRSS()
		if n++; n%30 == 0 {
			c.mu.Lock()
			c.rssTrace = append(c.rssTrace, fmt.Sprintf("%d/%d", procStatus(c.inst[0].PID(), "VmRSS:")>>10,
				procStatus(c.inst[1].PID(), "VmRSS:")>>10))
			c.mu.Unlock()
		}
		if time.Now().Before(next) {
			continue
		}
		i := int(c.kills.Load() % 2)
		c.up[i].Store(false)
		c.inst[i].Kill()
		c.kills.Add(1)
		time.Sleep(p.down)
		start := time.Now()
		if err := c.inst[i].Restart(); err != nil {
			t.Errorf("restart of instance %d after a kill: %v", i, err)
			return
		}
		c.mu.Lock()
		c.restartTimes = append(c.restartTimes, time.Since(start))
		c.mu.Unlock()
		c.up[i].Store(true)
		next = time.Now().Add(p.killEach)
	}
}

// openDB opens the shared database for the checks after the run.
func openDB(t *testing.T, ctx context.Context, url string) *bun.DB {
	t.Helper()
	db, err := model.OpenDB(ctx, model.DBOptions{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
