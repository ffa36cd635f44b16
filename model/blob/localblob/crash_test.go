package localblob

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/filegate/filegate/model/blob"
	"github.com/filegate/filegate/model/blob/blobtest"
)

// helperEnv tells a re-executed test binary to act as a crashing client:
// "writer:<root>" or "append:<root>".
const helperEnv = "FILEGATE_LOCALBLOB_HELPER"

// ackedSize is what the append helper gets acknowledged before it starts
// the append it is killed in.
const ackedSize = 3<<20 + 11

// TestHelperWriter is not a test: it is the child process of the crash
// tests, streaming into a writer (or an Append) until it is killed.
func TestHelperWriter(t *testing.T) {
	mode, root, ok := strings.Cut(os.Getenv(helperEnv), ":")
	if !ok {
		t.Skip("helper process for the crash tests")
	}
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	endless := blobtest.Pattern(2, 1<<62)
	switch mode {
	case "writer":
		w, err := s.Create(t.Context(), "victim")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(w, endless)
	case "append":
		n, err := s.Append(t.Context(), "victim", 0, blobtest.Pattern(1, ackedSize), nil)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("acked %d\n", n)
		s.Append(t.Context(), "victim", n, endless, nil)
	}
	t.Fatal("helper stopped streaming")
}

// startHelper runs this test binary as a helper child and returns it with
// its stdout.
func startHelper(t *testing.T, mode, root string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode+":"+root)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, bufio.NewScanner(out)
}

// waitUntil polls cond; the deadline only guards against a hung child.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper did not die by SIGKILL: %v", err)
	}
}

func TestCrashedWriterLeavesNoBlob(t *testing.T) {
	root := t.TempDir()
	cmd, _ := startHelper(t, "writer", root)
	tmpDir := filepath.Join(root, dirTmp)
	waitUntil(t, "the writer's temp file to hold bytes", func() bool {
		entries, _ := os.ReadDir(tmpDir)
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && fi.Size() > 0 {
				return true
			}
		}
		return false
	})
	kill(t, cmd)

	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(t.Context(), "victim"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Open after crash: %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(t.Context(), "victim"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat after crash: %v, want ErrNotFound", err)
	}
	var keys []string
	if err := s.Walk(t.Context(), func(k string, _ blob.Info) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("Walk after crash lists %v", keys)
	}
	// The cutoff is what protects other processes' live writers.
	if n, err := s.Sweep(t.Context(), time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("Sweep(an hour ago) = %d, %v; want 0", n, err)
	}
	leftovers, _ := os.ReadDir(tmpDir)
	if len(leftovers) != 1 {
		t.Fatalf("tmp/ holds %d files before the sweep, want the 1 leftover", len(leftovers))
	}
	if n, err := s.Sweep(t.Context(), time.Now().Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	if entries, _ := os.ReadDir(tmpDir); len(entries) != 0 {
		t.Fatalf("tmp/ still holds %v", entries)
	}
}

func TestCrashDuringAppend(t *testing.T) {
	root := t.TempDir()
	cmd, out := startHelper(t, "append", root)
	var acked int64
	for out.Scan() {
		if _, err := fmt.Sscanf(out.Text(), "acked %d", &acked); err == nil {
			break
		}
	}
	if acked != ackedSize {
		t.Fatalf("helper acknowledged %d bytes, want %d", acked, ackedSize)
	}
	data := filepath.Join(root, dirPData, "victim")
	waitUntil(t, "the second append to reach the file", func() bool {
		fi, err := os.Stat(data)
		return err == nil && fi.Size() > acked
	})
	kill(t, cmd)

	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	size, err := s.PartialSize(t.Context(), "victim")
	if err != nil {
		t.Fatal(err)
	}
	if size < acked {
		t.Fatalf("partial lost acknowledged bytes: size %d < %d", size, acked)
	}
	// Resume like a tus client: append at the reported offset.
	if _, err := s.Append(t.Context(), "victim", size, strings.NewReader("resumed"), nil); err != nil {
		t.Fatal(err)
	}
	info, err := s.Publish(t.Context(), "victim", "victim")
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(t.Context(), "victim")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(got)) || info.SHA256 != blobtest.SHA256(got) {
		t.Fatalf("Publish says {%d %s}, file holds {%d %s}", info.Size, info.SHA256, len(got), blobtest.SHA256(got))
	}
	want := append(blobtest.PatternBytes(1, ackedSize), blobtest.PatternBytes(2, int(size-acked))...)
	want = append(want, "resumed"...)
	if !bytes.Equal(got, want) {
		t.Fatal("published bytes are not acked chunk + streamed prefix + resumed chunk")
	}
}
