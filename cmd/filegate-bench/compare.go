package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// table is a parsed markdown table: the first header cell names it, rows
// are keyed by their first cell and columns by header.
type table struct {
	Kind   string
	Header []string
	Rows   map[string]map[string]string
	Order  []string
}

// splitRow splits "| a | b \| c |" into cells, honouring escaped pipes.
func splitRow(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "|")
	line = strings.TrimSuffix(line, "|")
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cur.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(line[i])
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

// parseTables finds every markdown table in md.
func parseTables(md string) []*table {
	var out []*table
	lines := strings.Split(md, "\n")
	for i := 0; i+1 < len(lines); i++ {
		if !strings.HasPrefix(strings.TrimSpace(lines[i]), "|") || !strings.HasPrefix(strings.TrimSpace(lines[i+1]), "|---") {
			continue
		}
		h := splitRow(lines[i])
		t := &table{Kind: h[0], Header: h, Rows: map[string]map[string]string{}}
		j := i + 2
		for ; j < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[j]), "|"); j++ {
			cells := splitRow(lines[j])
			row := map[string]string{}
			for k := 1; k < len(cells) && k < len(h); k++ {
				row[h[k]] = cells[k]
			}
			t.Rows[cells[0]] = row
			t.Order = append(t.Order, cells[0])
		}
		out = append(out, t)
		i = j
	}
	return out
}

// leadingNumber reads the median at the start of a cell like "477 (470–490)".
func leadingNumber(s string) (float64, bool) {
	end := 0
	for end < len(s) && (s[end] >= '0' && s[end] <= '9' || s[end] == '.' || s[end] == '-' && end == 0) {
		end++
	}
	if end == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(s[:end], 64)
	return v, err == nil
}

// compareTables shows, for every cell holding a number in both the old and
// the new report's "workload" and "benchmark" tables, the change. higher
// says for a row label whether bigger is better; unknown rows print no
// verdict.
func compareTables(oldMD, newMD string, higher func(row string) (bool, bool)) string {
	olds := map[string]*table{}
	for _, t := range parseTables(oldMD) {
		olds[t.Kind] = t
	}
	var b strings.Builder
	b.WriteString("| row | column | before | now | change |\n|---|---|---|---|---|\n")
	n := 0
	for _, nt := range parseTables(newMD) {
		if nt.Kind != "workload" && nt.Kind != "S3 workload" && nt.Kind != "benchmark" {
			continue
		}
		ot := olds[nt.Kind]
		if ot == nil {
			continue
		}
		for _, row := range nt.Order {
			orow := ot.Rows[row]
			if orow == nil {
				continue
			}
			for _, col := range nt.Header[1:] {
				nv, ok1 := leadingNumber(nt.Rows[row][col])
				ov, ok2 := leadingNumber(orow[col])
				if !ok1 || !ok2 || ov == 0 {
					continue
				}
				change := (nv - ov) / ov * 100
				verdict := ""
				if hi, known := higher(row); known && math.Abs(change) >= 5 {
					if (change > 0) == hi {
						verdict = " better"
					} else {
						verdict = " worse"
					}
				}
				if nt.Kind == "benchmark" && math.Abs(change) >= 5 {
					verdict = map[bool]string{true: " worse", false: " better"}[change > 0]
				}
				if verdict != "" && rangesOverlap(nt.Rows[row][col], orow[col]) {
					verdict = " (within the rounds' spread)"
				}
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %+.1f%%%s |\n", escapeCell(row), escapeCell(col), fmtNum(ov), fmtNum(nv), change, verdict)
				n++
			}
		}
	}
	if n == 0 {
		return "No cell of this run has a number in the earlier report (different sizes or targets?).\n"
	}
	return b.String() + "\nChanges under 5% get no verdict, nor do those whose min–max ranges overlap: the machine is shared and noisy.\n"
}

// rangesOverlap reports whether two cells like "477 (470–490)" have
// overlapping min–max ranges; cells without a range never overlap.
func rangesOverlap(a, b string) bool {
	lo1, hi1, ok1 := cellRange(a)
	lo2, hi2, ok2 := cellRange(b)
	return ok1 && ok2 && lo1 <= hi2 && lo2 <= hi1
}

func cellRange(s string) (lo, hi float64, ok bool) {
	_, rest, found := strings.Cut(s, "(")
	if !found {
		return 0, 0, false
	}
	rest, _, _ = strings.Cut(rest, ")")
	a, b, found := strings.Cut(rest, "–")
	if !found {
		return 0, 0, false
	}
	lo, ok1 := leadingNumber(a)
	hi, ok2 := leadingNumber(b)
	return lo, hi, ok1 && ok2
}
