package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// binaries are the server programs the harness runs; an empty path comes
// with the reason its column is n/a.
type binaries struct {
	filegate, filegateNote string
	xnet                   string
	tusd, tusdNA           string
	tusdVersion            string
	rclone, rcloneNA       string
}

// goCmd runs the go tool in dir, its output going to logPath.
func goCmd(ctx context.Context, dir, logPath string, env []string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if logPath != "" {
		os.WriteFile(logPath, out, 0o644)
	}
	if err != nil {
		return fmt.Errorf("go %s: %v: %s", strings.Join(args, " "), err, short(string(out), 400))
	}
	return nil
}

// buildAll builds or finds every server binary. Only the x/net peer is
// required, because it is part of the harness; the rest become n/a.
func (h *harness) buildAll(ctx context.Context) error {
	b := &h.bins
	binDir := filepath.Join(h.workDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	b.xnet = filepath.Join(binDir, "xnetdav")
	if err := goCmd(ctx, h.root, filepath.Join(h.logDir, "build-xnetdav.log"), nil,
		"build", "-o", b.xnet, "./cmd/filegate-bench/peers/xnetdav"); err != nil {
		return err
	}
	if h.cfg.wantTarget("filegate/sqlite") || h.cfg.wantTarget("filegate/pg") || h.cfg.wantTarget(targetFGS3) {
		fg := filepath.Join(binDir, "filegate")
		os.Remove(fg)
		if err := goCmd(ctx, h.root, filepath.Join(h.logDir, "build-filegate.log"), []string{"CGO_ENABLED=0"},
			"build", "-o", fg, "./cmd/filegate"); err != nil {
			b.filegateNote = "filegate did not build: " + short(err.Error(), 300)
			h.logf("%s", b.filegateNote)
		} else {
			b.filegate = fg
		}
	}
	b.rclone, b.rcloneNA = rcloneBinary()
	if h.cfg.wantTarget("tusd") {
		b.tusd, b.tusdNA = h.tusdBinary(ctx, binDir)
	}
	return nil
}

// tusdBinary returns tusd built at the version go.mod pins, building it from
// the module cache the first time; later runs reuse bench/work/bin.
func (h *harness) tusdBinary(ctx context.Context, binDir string) (path, na string) {
	ver := h.modVersion(ctx, "github.com/tus/tusd/v2")
	if ver == "" {
		ver = "v2.10.1"
	}
	h.bins.tusdVersion = ver
	path = filepath.Join(binDir, "tusd-"+ver)
	if _, err := os.Stat(path); err == nil {
		return path, ""
	}
	if !h.cfg.buildTusd {
		return "", "n/a (tusd " + ver + " not built yet; `make bench` builds it once)"
	}
	h.logf("building tusd %s from the module cache (once; takes minutes)", ver)
	// Outside any module, so the repo's go.mod and go.sum stay untouched.
	tmp, err := os.MkdirTemp("", "filegate-bench-tusd-")
	if err != nil {
		return "", "n/a (" + err.Error() + ")"
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", "github.com/tus/tusd/v2@"+ver)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.Output()
	if err != nil {
		return "", "n/a (tusd download failed: " + short(err.Error(), 80) + ")"
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", "n/a (tusd download: no Dir)"
	}
	// The module cache is read-only, but go build writes only to -o and
	// the build cache; tusd's own go.sum covers its dependencies.
	tmpBin := filepath.Join(binDir, ".tusd-"+ver+".tmp")
	if err := goCmd(ctx, mod.Dir, filepath.Join(h.logDir, "build-tusd.log"), []string{"CGO_ENABLED=0", "GOFLAGS="},
		"build", "-o", tmpBin, "./cmd/tusd"); err != nil {
		return "", "n/a (tusd build failed: " + short(err.Error(), 80) + ")"
	}
	if err := os.Rename(tmpBin, path); err != nil {
		return "", "n/a (" + err.Error() + ")"
	}
	return path, ""
}

// modVersion is the version of a module in the repo's build list.
func (h *harness) modVersion(ctx context.Context, mod string) string {
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}}", mod)
	cmd.Dir = h.root
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
