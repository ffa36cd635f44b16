package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// role says how a target's numbers are read: filegate is measured, peers
// are what it must beat, limits are what nobody can beat.
type role int

const (
	roleSubject role = iota
	rolePeer
	roleLimit
)

// capability is a door a target has.
type capability uint8

const (
	capDAV  capability = 1 << iota // WebDAV (or WebDAV-shaped) writes and reads
	capTus                         // tus 1.0.0 creation and PATCH
	capDisk                        // the raw fsynced disk write, no server
	capList                        // PROPFIND worth measuring
	capS3                          // the S3 section's workloads
)

// targetSpec describes one column of the table.
type targetSpec struct {
	Name    string
	Role    role
	Caps    capability
	DAVPath string // prefix of the WebDAV door, e.g. "/dav/"
	TusPath string // tus creation URL path, e.g. "/uploads/"
	// NA, when set, is why the target cannot run: its rows say so.
	NA string
	// Section is the report section of the target's column: "" for the
	// local-disk table, sectionS3 for the S3 one.
	Section string
	start   startFunc
}

// startFunc starts a target in dir; tag names the workload.
type startFunc func(ctx context.Context, dir, tag string) (*running, error)

// running is a target started for one workload.
type running struct {
	spec *targetSpec
	ep   *endpoint
	proc *proc // nil for the disk and SDK limits
	sdk  *sdkTarget
	dir  string
	stop func()
}

// has reports whether the target has capability c.
func (t *targetSpec) has(c capability) bool { return t.Caps&c != 0 }

// targetSpecs lists every target in table order; those whose binary could
// not be had carry NA.
func (h *harness) targetSpecs() []*targetSpec {
	fgNA := ""
	if h.bins.filegate == "" {
		fgNA = "n/a (door not built)"
	}
	pgNA := fgNA
	if pgNA == "" && h.pgErr != nil {
		pgNA = "n/a (no PostgreSQL: " + short(h.pgErr.Error(), 60) + ")"
	}
	specs := []*targetSpec{
		{Name: "filegate/sqlite", Role: roleSubject, Caps: capDAV | capTus | capList, DAVPath: "/dav/", TusPath: "/uploads/", NA: fgNA, start: h.startFilegate(false)},
		{Name: "filegate/pg", Role: roleSubject, Caps: capDAV | capTus | capList, DAVPath: "/dav/", TusPath: "/uploads/", NA: pgNA, start: h.startFilegate(true)},
		{Name: "x/net", Role: rolePeer, Caps: capDAV | capList, DAVPath: "/", start: h.startXNet},
		{Name: "rclone", Role: rolePeer, Caps: capDAV | capList, DAVPath: "/", NA: h.bins.rcloneNA, start: h.startRclone},
		{Name: "tusd", Role: rolePeer, Caps: capTus, TusPath: "/files/", NA: h.bins.tusdNA, start: h.startTusd},
		{Name: "limit", Role: roleLimit, Caps: capDAV | capTus, DAVPath: "/", TusPath: "/files/", start: h.startLimit},
		{Name: "disk", Role: roleLimit, Caps: capDisk, start: h.startDisk},
	}
	specs = append(specs, h.s3Specs(pgNA)...)
	var out []*targetSpec
	for _, s := range specs {
		if h.cfg.wantTarget(s.Name) {
			out = append(out, s)
		}
	}
	return out
}

// launch says how to start one server and how to know it is up.
type launch struct {
	spec      *targetSpec
	dir, tag  string
	opts      spawnOpts
	bin       string
	args      func(addr string) []string
	readyPath string
	readyOK   func(status int) bool // nil: any answer below 500
	// user and pass are sent as HTTP Basic auth, when set.
	user, pass string
}

// serve starts a server process on a fresh port and waits until it answers.
// The port is picked free before the server binds it; a server that exits
// because something took it in between is started again on another one.
func (h *harness) serve(ctx context.Context, l launch) (*running, error) {
	if l.opts.dir == "" {
		l.opts.dir = l.dir
	}
	var (
		p    *proc
		base string
	)
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		logPath := filepath.Join(h.logDir, safeName(l.spec.Name)+"-"+l.tag+".log")
		p, err = h.sup.start(l.spec.Name, logPath, l.opts, l.bin, l.args(addr)...)
		if err != nil {
			return nil, err
		}
		base = "http://" + addr
		ok := l.readyOK
		if ok == nil {
			ok = func(code int) bool { return code > 0 && code < 500 }
		}
		err = waitReady(ctx, p, base+l.readyPath, l.user, l.pass, ok, 60*time.Second)
		if err == nil {
			break
		}
		exited := p.exited()
		h.sup.stop(p, syscall.SIGKILL, 0)
		if attempt >= 3 || !exited || !strings.Contains(strings.ToLower(p.logTail()), "address already in use") {
			return nil, err
		}
		h.logf("%s: its port was taken before it bound it; starting it again", l.spec.Name)
	}
	r := &running{spec: l.spec, proc: p, dir: l.dir,
		ep: &endpoint{client: newClient(), base: base, user: l.user, pass: l.pass}}
	r.stop = func() {
		r.ep.client.CloseIdleConnections()
		h.sup.stop(p, syscall.SIGTERM, 10*time.Second)
	}
	return r, nil
}

// startFilegate runs the real binary, on a fresh PostgreSQL database when
// pg is set and on SQLite in its data folder otherwise.
func (h *harness) startFilegate(pg bool) startFunc {
	return func(ctx context.Context, dir, tag string) (*running, error) {
		spec := h.spec("filegate/sqlite")
		if pg {
			spec = h.spec("filegate/pg")
		}
		return h.startFilegateOn(ctx, spec, dir, tag, pg, "", nil)
	}
}

// startFilegateOn runs the real binary for spec: on a fresh PostgreSQL
// database when pg is set, with blobs at blobURL when it is not empty,
// with env added to the process's environment.
func (h *harness) startFilegateOn(ctx context.Context, spec *targetSpec, dir, tag string, pg bool, blobURL string, env []string) (*running, error) {
	args := []string{"serve", "--data", dir}
	dropDB := func() {}
	if pg {
		name := "fgbench_" + strings.NewReplacer("-", "_", "/", "_").Replace(safeName(spec.Name)+"_"+tag)
		url, err := h.pg.newDatabase(ctx, name)
		if err != nil {
			return nil, err
		}
		args = append(args, "--database-url", url)
		dropDB = func() { h.pg.dropDatabase(name) }
	}
	if blobURL != "" {
		args = append(args, "--blob-url", blobURL)
	}
	r, err := h.serve(ctx, launch{spec: spec, dir: dir, tag: tag, bin: h.bins.filegate,
		opts:      spawnOpts{env: append([]string{"FILEGATE_ADMIN_PASSWORD=" + h.adminPass}, env...)},
		args:      func(addr string) []string { return append(args, "--listen", addr) },
		readyPath: "/readyz", readyOK: func(c int) bool { return c == http.StatusOK },
		user: "admin", pass: h.adminPass})
	if err != nil {
		dropDB()
		return nil, err
	}
	stop := r.stop
	r.stop = func() { stop(); dropDB() }
	return r, nil
}

func (h *harness) startXNet(ctx context.Context, dir, tag string) (*running, error) {
	return h.serve(ctx, launch{spec: h.spec("x/net"), dir: dir, tag: tag, bin: h.bins.xnet, readyPath: "/",
		args: func(addr string) []string { return []string{"-listen", addr, "-dir", dir} }})
}

func (h *harness) startRclone(ctx context.Context, dir, tag string) (*running, error) {
	return h.serve(ctx, launch{spec: h.spec("rclone"), dir: dir, tag: tag, bin: h.bins.rclone, readyPath: "/",
		opts: spawnOpts{env: []string{"RCLONE_CONFIG=" + filepath.Join(dir, "no-rclone.conf")}},
		args: func(addr string) []string { return []string{"serve", "webdav", "--addr", addr, dir} }})
}

func (h *harness) startTusd(ctx context.Context, dir, tag string) (*running, error) {
	// -verbose=false: tusd logs every request by default and the harness
	// measures storage, not log formatting.
	return h.serve(ctx, launch{spec: h.spec("tusd"), dir: dir, tag: tag, bin: h.bins.tusd, readyPath: "/files/",
		args: func(addr string) []string {
			host, port, _ := strings.Cut(addr, ":")
			return []string{"-host", host, "-port", port, "-upload-dir", dir, "-base-path", "/files/", "-verbose=false"}
		}})
}

func (h *harness) startLimit(ctx context.Context, dir, tag string) (*running, error) {
	return h.serve(ctx, launch{spec: h.spec("limit"), dir: dir, tag: tag, bin: h.self,
		readyPath: "/ping", readyOK: func(c int) bool { return c == http.StatusOK },
		args: func(addr string) []string {
			return []string{"serve-limit", "-listen", addr, "-ram", strconv.FormatInt(h.cfg.bigSize, 10)}
		}})
}

func (h *harness) startDisk(_ context.Context, dir, _ string) (*running, error) {
	return &running{spec: h.spec("disk"), dir: dir, stop: func() {}}, nil
}

// spec finds a target by name among all known ones.
func (h *harness) spec(name string) *targetSpec {
	for _, s := range h.specs {
		if s.Name == name {
			return s
		}
	}
	return &targetSpec{Name: name}
}

// safeName turns a target name into a file name part.
func safeName(s string) string {
	return strings.NewReplacer("/", "-", " ", "-").Replace(s)
}

// rcloneBinary finds rclone, or says why its column is n/a.
func rcloneBinary() (path, na string) {
	p, err := exec.LookPath("rclone")
	if err != nil {
		return "", "n/a (rclone not installed)"
	}
	return p, ""
}

// short cuts s to n runes with an ellipsis.
func short(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// freshDir makes an empty folder for one target and workload.
func (h *harness) freshDir(name, tag string) (string, error) {
	dir := filepath.Join(h.runDir, tag, safeName(name))
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("make %s: %w", dir, err)
	}
	return dir, nil
}
