package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// machine is what the report says about where it was measured.
type machine struct {
	CPU, Kernel, Disk, Go string
	Cores                 int
	MemGiB                float64
}

func readMachine(dir string) machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if mem, err := statusFieldFile("/proc/meminfo", "MemTotal:"); err == nil {
		m.MemGiB = float64(mem) / (1 << 30)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Disk = mountOf(dir)
	return m
}

func statusFieldFile(path, field string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseStatusField(bufio.NewScanner(f), field)
}

// mountOf names the file system holding dir, from the longest matching
// mount point in /proc/self/mountinfo.
func mountOf(dir string) string {
	abs, _ := filepath.Abs(dir)
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	best, out := "", "unknown"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, rest := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(rest) < 2 {
			continue
		}
		mp := fields[4]
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, out = mp, fmt.Sprintf("%s on %s (mounted at %s)", rest[0], rest[1], mp)
		}
	}
	return out
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// firstLine runs a command and returns the first line it prints.
func firstLine(dir, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// document is the whole markdown report.
func (h *harness) document(started time.Time, all []*targetSpec) string {
	m := readMachine(h.runDir)
	specs := inSection(h.rec.usedTargets(all), "")
	var b strings.Builder
	mode := "full"
	switch {
	case h.cfg.smoke:
		mode = "smoke (tiny sizes, harness check only: the numbers mean nothing)"
	case h.cfg.short:
		mode = "short (cut sizes)"
	}
	fmt.Fprintf(&b, "# filegate benchmark\n\n")
	fmt.Fprintf(&b, "Run %s, %s, %s. Mode: %s; rounds: %d for large workloads, %d for small ones.\n\n",
		started.UTC().Format("2006-01-02 15:04 MST"), "took "+time.Since(started).Round(time.Second).String(),
		"`"+strings.TrimSpace("go run ./cmd/filegate-bench "+strings.Join(h.args, " "))+"`", mode, h.cfg.roundsLarge, h.cfg.roundsSmall)
	b.WriteString("## Machine\n\n")
	fmt.Fprintf(&b, "- CPU: %s, %d cores; memory %.1f GiB; kernel %s\n", m.CPU, m.Cores, m.MemGiB, m.Kernel)
	fmt.Fprintf(&b, "- Disk under test: %s\n", m.Disk)
	fmt.Fprintf(&b, "- Load average (1, 5, 15 min) at start: %s; at end: %s (the machine is shared: above %d the numbers are noisy)\n", h.loadStart, loadAvg(), m.Cores)
	fmt.Fprintf(&b, "- Go: %s", m.Go)
	var mods []string
	for _, mod := range []string{"golang.org/x/net", "github.com/tus/tusd/v2", "github.com/uptrace/bun", "github.com/casbin/casbin/v2"} {
		if v := h.modVersion(context.Background(), mod); v != "" {
			mods = append(mods, mod+" "+v)
		}
	}
	if len(mods) > 0 {
		fmt.Fprintf(&b, "; modules: %s", strings.Join(mods, ", "))
	}
	b.WriteString("\n")
	if rev := firstLine(h.root, "git", "describe", "--always", "--dirty"); rev != "" {
		fmt.Fprintf(&b, "- filegate commit: %s\n", rev)
	}
	if h.bins.rclone != "" {
		fmt.Fprintf(&b, "- rclone: %s\n", firstLine("", h.bins.rclone, "version"))
	}
	if h.bins.tusdVersion != "" {
		fmt.Fprintf(&b, "- tusd: %s, filestore, built from the module cache with CGO_ENABLED=0, run with -verbose=false\n", h.bins.tusdVersion)
	}
	if h.pg != nil {
		fmt.Fprintf(&b, "- PostgreSQL %s for filegate/pg: %s, full_page_writes=on\n", h.pg.Version, h.pg.Settings)
	}
	b.WriteString("\n## Results\n\nMedian of the rounds, (min–max) across rounds. ⚠ marks a cell where a round failed (see notes).\n\n")
	if len(specs) > 0 {
		b.WriteString(h.rec.resultsTable(specs))
		b.WriteString("\n## Ratios\n\nEach target's median divided by the best peer's, then by the binding limit's (for ↑ rows the lowest ceiling, for ↓ rows the highest floor). On ↑ rows above 1 is better; on ↓ rows below 1 is better.\n\n")
		b.WriteString(h.rec.ratioTable(specs))
	} else {
		b.WriteString("No local-disk target in this run (-targets).\n")
	}
	if s3 := h.s3Section(started, all); s3 != "" {
		b.WriteString("\n" + s3)
	}
	b.WriteString("\n## Authorization decision\n\n`go test -run '^$' -bench Decide -benchmem ./policy/`")
	switch t := h.rec.benchTable(); {
	case t != "":
		b.WriteString(":\n\n" + t)
	case h.policyNA != "":
		b.WriteString(": " + h.policyNA + "\n")
	default:
		b.WriteString(": not run (-workloads)\n")
	}
	b.WriteString("\n## Method\n\n")
	b.WriteString(methodText)
	if notes := h.rec.notesOf(false); len(notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}

const methodText = `- One Go client (cmd/filegate-bench) drives every target the same way over 127.0.0.1: keep-alive connections, 256 KiB socket and copy buffers, request bodies generated on the fly (never held whole in RAM), responses read to the end.
- Every target is started by the harness for each workload, in a fresh folder (and a fresh PostgreSQL database), and stopped after it.
- Rounds interleave the targets, the order rotated each round; ` + "`sync`" + ` runs before each timed large transfer so one target's dirty pages are not flushed on another's time.
- filegate/sqlite and filegate/pg are the real binary (` + "`CGO_ENABLED=0 go build ./cmd/filegate`" + `), WebDAV at /dav/ and tus at /uploads/ with HTTP Basic auth; filegate fsyncs, the peers do not.
- x/net is a bare golang.org/x/net/webdav server (webdav.Dir + webdav.NewMemLS, cmd/filegate-bench/peers/xnetdav).
- limit is a loopback server that discards bodies (tus-shaped for POST/PATCH) and serves GETs from RAM; disk is a create + write + fsync of the same bytes in the same folder, like ` + "`dd conv=fsync`" + `, with the same workers for small files.
- Server peak RSS is VmHWM from /proc/PID/status after writing 5 to /proc/PID/clear_refs just before the transfer; for filegate/pg it is filegate's own process only.
- PROPFIND asks for allprop with Depth: 1, as desktop clients do, on folders filled through the target's own PUTs; the first answer of each round must list every file.
- The large-file round reads the file back three times in a row and reports the bytes over the time of all three, because one GET of 1 GiB lasts a fraction of a second here; its time to first byte is the first GET's, right after the upload, and includes what the server does before it sends (for filegate: authentication, the authorization decision and its audit row).
- GETs from the limit are written from one RAM buffer (on transparent huge pages) in 4 MiB writes: the fastest way found to send a body over loopback here, faster than sendfile from tmpfs; a GET ratio slightly above 1 against the limit is noise, not a broken ceiling.
- Latency percentiles are nearest-rank over all requests of a round; the table shows the median round.
`
