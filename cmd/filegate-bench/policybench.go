package main

import (
	"bufio"
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// benchResult is one BenchmarkDecide* benchmark over -count runs.
type benchResult struct {
	Name        string
	NsOp        []float64
	BOp, Allocs float64
}

// benchLine matches a go test -benchmem line; the -N GOMAXPROCS suffix is
// dropped from the name so results compare across machines.
var benchLine = regexp.MustCompile(`^(BenchmarkDecide\S*?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+([\d.]+) B/op)?(?:\s+([\d.]+) allocs/op)?`)

// parseBench collects BenchmarkDecide* results from go test output, in the
// order they first appear.
func parseBench(out string) []benchResult {
	var res []benchResult
	idx := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		ns, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			continue
		}
		i, ok := idx[m[1]]
		if !ok {
			i = len(res)
			idx[m[1]] = i
			res = append(res, benchResult{Name: m[1]})
		}
		res[i].NsOp = append(res[i].NsOp, ns)
		res[i].BOp, _ = strconv.ParseFloat(m[3], 64)
		res[i].Allocs, _ = strconv.ParseFloat(m[4], 64)
	}
	return res
}

// policyCount is how many times each benchmark runs: once in the quick
// modes, as many as the small workloads' rounds otherwise.
func (c *config) policyCount() int {
	if c.short || c.smoke {
		return 1
	}
	return c.roundsSmall
}

// runPolicyBench runs the policy package's Decide benchmarks; the reason
// string explains an empty result.
func (h *harness) runPolicyBench(ctx context.Context) ([]benchResult, string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	args := []string{"test", "-run", "^$", "-bench", "Decide", "-benchmem", "-count", strconv.Itoa(h.cfg.policyCount())}
	if h.cfg.policyBenchtime != "" {
		args = append(args, "-benchtime", h.cfg.policyBenchtime)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./policy/")...)
	cmd.Dir = h.root
	out, err := cmd.CombinedOutput()
	res := parseBench(string(out))
	if len(res) > 0 {
		return res, ""
	}
	if err != nil {
		return nil, "n/a (" + short(err.Error()+": "+string(out), 200) + ")"
	}
	return nil, "n/a (no BenchmarkDecide* in ./policy yet)"
}
