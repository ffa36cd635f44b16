package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// record is one raw JSON line: a measured value, or why there is none.
type record struct {
	Time     time.Time `json:"time"`
	Workload string    `json:"workload"`
	Metric   string    `json:"metric"`
	Label    string    `json:"label,omitempty"`
	Target   string    `json:"target"`
	Round    int       `json:"round"`
	Value    *float64  `json:"value,omitempty"`
	NA       string    `json:"na,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// cell gathers one target's values for one metric across rounds.
type cell struct {
	vals []float64
	na   string
	err  string
}

type cellKey struct{ metric, target string }

// recorder collects results in table order and streams them as JSON lines.
type recorder struct {
	mu      sync.Mutex
	out     io.Writer
	metrics []metricDef
	cells   map[cellKey]*cell
	notes   []string
	bench   []benchResult
}

func newRecorder(out io.Writer) *recorder {
	return &recorder{out: out, cells: map[cellKey]*cell{}}
}

func (r *recorder) cell(metric, target string) *cell {
	k := cellKey{metric, target}
	c := r.cells[k]
	if c == nil {
		c = &cell{}
		r.cells[k] = c
	}
	return c
}

func (r *recorder) emit(rec record) {
	rec.Time = time.Now().UTC()
	if r.out != nil {
		b, _ := json.Marshal(rec)
		r.out.Write(append(b, '\n'))
	}
}

// addRows registers a workload's metrics as table rows.
func (r *recorder) addRows(w *workload) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range w.Metrics {
		if !slices.ContainsFunc(r.metrics, func(x metricDef) bool { return x.ID == m.ID }) {
			r.metrics = append(r.metrics, m)
		}
	}
}

func (r *recorder) label(id string) string {
	for _, m := range r.metrics {
		if m.ID == id {
			return m.Label
		}
	}
	return id
}

// value records one measurement.
func (r *recorder) value(w *workload, target string, round int, metric string, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.cell(metric, target)
	c.vals = append(c.vals, v)
	r.emit(record{Workload: w.ID, Metric: metric, Label: r.label(metric), Target: target, Round: round, Value: &v})
}

// unavailable marks every metric of w as n/a for target.
func (r *recorder) unavailable(w *workload, target, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range w.Metrics {
		r.cell(m.ID, target).na = why
		r.emit(record{Workload: w.ID, Metric: m.ID, Label: m.Label, Target: target, Round: -1, NA: why})
	}
}

// failed marks w's metrics that have no value in this round as failed.
func (r *recorder) failed(w *workload, target string, round int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	msg := short(err.Error(), 160)
	for _, m := range w.Metrics {
		c := r.cell(m.ID, target)
		if c.err == "" {
			c.err = msg
		}
	}
	r.emit(record{Workload: w.ID, Target: target, Round: round, Error: err.Error()})
	r.notes = append(r.notes, fmt.Sprintf("%s on %s, round %d: %s", w.ID, target, round+1, short(err.Error(), 400)))
}

// note adds a line to the report's notes.
func (r *recorder) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// fmtNum prints 3 significant figures for small numbers and integers for
// large ones, which is all the noise on a shared machine allows.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// text is what the results table shows for a cell.
func (c *cell) text() string {
	switch {
	case c == nil:
		return "–"
	case len(c.vals) > 0:
		s := summarize(c.vals)
		out := fmtNum(s.Median)
		if s.N > 1 {
			out += fmt.Sprintf(" (%s–%s)", fmtNum(s.Min), fmtNum(s.Max))
		}
		if c.err != "" {
			out += " ⚠"
		}
		return out
	case c.na != "":
		return c.na
	case c.err != "":
		return "error: " + short(c.err, 60)
	}
	return "–"
}

func (r *recorder) median(metric, target string) (float64, bool) {
	c := r.cells[cellKey{metric, target}]
	if c == nil || len(c.vals) == 0 {
		return 0, false
	}
	return median(c.vals), true
}

// best finds the best median among targets of role for a metric: the
// highest for throughput, the lowest otherwise. For limits it is the
// binding one instead: the lowest ceiling, the highest floor.
func (r *recorder) best(m metricDef, specs []*targetSpec, ro role) (float64, string, bool) {
	var bv float64
	var bn string
	found := false
	for _, s := range specs {
		if s.Role != ro {
			continue
		}
		v, ok := r.median(m.ID, s.Name)
		if !ok {
			continue
		}
		better := v > bv
		if !m.Higher {
			better = v < bv
		}
		if ro == roleLimit {
			better = !better
		}
		if !found || better {
			bv, bn, found = v, s.Name, true
		}
	}
	return bv, bn, found
}

// usedTargets keeps the targets that have any cell, so a run limited by
// -workloads shows no empty columns.
func (r *recorder) usedTargets(specs []*targetSpec) []*targetSpec {
	var out []*targetSpec
	for _, s := range specs {
		for k := range r.cells {
			if k.target == s.Name {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

func escapeCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// resultsTable is the main table: one row per metric, one column per
// target, median (min–max) of the rounds.
func (r *recorder) resultsTable(specs []*targetSpec) string {
	return r.resultsTableKind("workload", specs, "")
}

// resultsTableKind is the results table of one section; kind is its
// first header cell, which -compare matches tables by.
func (r *recorder) resultsTableKind(kind string, specs []*targetSpec, section string) string {
	var b strings.Builder
	b.WriteString("| " + kind + " |")
	for _, s := range specs {
		b.WriteString(" " + s.Name + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(specs)) + "\n")
	for _, m := range r.metrics {
		if m.Section != section {
			continue
		}
		b.WriteString("| " + escapeCell(m.Label) + " |")
		for _, s := range specs {
			b.WriteString(" " + escapeCell(r.cells[cellKey{m.ID, s.Name}].text()) + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// ratioTable gives each non-limit target's median divided by the best
// peer's and by the binding limit's.
func (r *recorder) ratioTable(specs []*targetSpec) string {
	var cols []*targetSpec
	for _, s := range specs {
		if s.Role != roleLimit {
			cols = append(cols, s)
		}
	}
	var b strings.Builder
	b.WriteString("| ratios (÷ best peer · ÷ limit) |")
	for _, s := range cols {
		b.WriteString(" " + s.Name + " |")
	}
	b.WriteString(" best peer | limit |\n|---|" + strings.Repeat("---|", len(cols)+2) + "\n")
	for _, m := range r.metrics {
		if m.NoRatio || m.Section != "" {
			continue
		}
		arrow := " ↓"
		if m.Higher {
			arrow = " ↑"
		}
		peer, peerName, okPeer := r.best(m, specs, rolePeer)
		lim, limName, okLim := r.best(m, specs, roleLimit)
		b.WriteString("| " + escapeCell(m.Label) + arrow + " |")
		for _, s := range cols {
			v, ok := r.median(m.ID, s.Name)
			if !ok {
				b.WriteString(" – |")
				continue
			}
			b.WriteString(" " + ratio(v, peer, okPeer) + " · " + ratio(v, lim, okLim) + " |")
		}
		b.WriteString(" " + orDash(peerName, okPeer) + " | " + orDash(limName, okLim) + " |\n")
	}
	return b.String()
}

func ratio(v, ref float64, ok bool) string {
	if !ok || ref == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v/ref)
}

func orDash(s string, ok bool) string {
	if !ok {
		return "–"
	}
	return s
}

// benchTable shows the policy package's BenchmarkDecide results.
func (r *recorder) benchTable() string {
	if len(r.bench) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| benchmark | ns/op | B/op | allocs/op |\n|---|---|---|---|\n")
	for _, x := range r.bench {
		s := summarize(x.NsOp)
		ns := fmtNum(s.Median)
		if s.N > 1 {
			ns += fmt.Sprintf(" (%s–%s)", fmtNum(s.Min), fmtNum(s.Max))
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f |\n", escapeCell(x.Name), ns, x.BOp, x.Allocs)
	}
	return b.String()
}
