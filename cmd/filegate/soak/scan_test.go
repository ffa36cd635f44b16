package soak

import (
	"fmt"
	"strings"
)

// scanner finds any of a set of secrets in text in one pass: secrets are
// indexed by their first scanKey bytes, so a position costs one map
// lookup however many secrets there are.
type scanner struct {
	bySuffix map[string][]string
	what     map[string]string
	// patterns are generic shapes of credentials that must not appear
	// either, whoever's they are.
	patterns []string
	hits     []string
}

const scanKey = 8

func newScanner(s *secrets) *scanner {
	sc := &scanner{bySuffix: map[string][]string{}, what: map[string]string{},
		patterns: []string{"fgk_", "fgt_", "signature=", "Authorization", "Bearer ", "Basic ", "filegate_admin="}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for v, what := range s.list {
		sc.bySuffix[v[:scanKey]] = append(sc.bySuffix[v[:scanKey]], v)
		sc.what[v] = what
	}
	return sc
}

// scan records every secret and pattern found in text.
func (sc *scanner) scan(where, text string) {
	for i := 0; i+scanKey <= len(text); i++ {
		for _, v := range sc.bySuffix[text[i:i+scanKey]] {
			if strings.HasPrefix(text[i:], v) {
				sc.hit(fmt.Sprintf("%s: %s", where, sc.what[v]))
			}
		}
	}
	for _, p := range sc.patterns {
		if strings.Contains(text, p) {
			sc.hit(fmt.Sprintf("%s: the pattern %q", where, p))
		}
	}
}

func (sc *scanner) hit(s string) {
	if len(sc.hits) < 1000 {
		sc.hits = append(sc.hits, s)
	}
}

// scanLog scans a process's output line by line.
func (sc *scanner) scanLog(name, log string) (lines int) {
	for i, line := range strings.Split(log, "\n") {
		sc.scan(fmt.Sprintf("%s log line %d", name, i+1), line)
		lines++
	}
	return lines
}
