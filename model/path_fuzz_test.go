package model

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// FuzzCleanPath checks the canonical form every door relies on (seed
// corpus in testdata/fuzz/FuzzCleanPath: traversal in every encoding,
// NFD, overlong and invalid UTF-8, names and paths past the limits). An
// accepted path is a fixed point made of the input's own names, in order,
// in NFC; ".." is refused, never resolved.
func FuzzCleanPath(f *testing.F) {
	f.Add("/a/b")
	f.Add("/a/../b")
	f.Fuzz(func(t *testing.T, in string) {
		p, err := CleanPath(in)
		var want []string
		dotdot := false
		for _, s := range strings.Split(in, "/") {
			switch s {
			case "", ".":
			case "..":
				dotdot = true
			default:
				want = append(want, norm.NFC.String(s))
			}
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("CleanPath(%q) = %v, want ErrInvalid", in, err)
			}
			return
		}
		if dotdot {
			t.Fatalf("CleanPath(%q) resolved \"..\" to %q instead of refusing it", in, p)
		}
		if got := "/" + strings.Join(want, "/"); got != p {
			t.Fatalf("CleanPath(%q) = %q, want the input's names in NFC: %q", in, p, got)
		}
		if again, err := CleanPath(p); err != nil || again != p {
			t.Fatalf("CleanPath not idempotent: %q -> %q -> %q, %v", in, p, again, err)
		}
		if len(p) > MaxPathBytes || !utf8.ValidString(p) || !norm.NFC.IsNormalString(p) || !IsWithin(p, "/") {
			t.Fatalf("CleanPath(%q) = %q: too long, not NFC UTF-8 or outside the root", in, p)
		}
		if len(want) > MaxDepth {
			t.Fatalf("CleanPath(%q) accepted depth %d", in, len(want))
		}
		for _, s := range want {
			if c, err := CleanName(s); err != nil || c != s {
				t.Fatalf("CleanPath(%q) = %q has name %q that CleanName makes %q, %v", in, p, s, c, err)
			}
		}
		if p != "/" {
			parent, name := SplitPath(p)
			if JoinPath(parent, name) != p || !IsWithin(p, parent) || IsWithin(parent, p) {
				t.Fatalf("SplitPath(%q) = %q, %q does not join back", p, parent, name)
			}
		}
	})
}

// FuzzCleanName checks single names: an accepted name is its own NFC
// form, a fixed point, within MaxNameBytes, without separators or
// control characters, and a one-name clean path.
func FuzzCleanName(f *testing.F) {
	f.Add("report.pdf")
	f.Add("%2e%2e")
	f.Fuzz(func(t *testing.T, in string) {
		n, err := CleanName(in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("CleanName(%q) = %v, want ErrInvalid", in, err)
			}
			return
		}
		if n != norm.NFC.String(in) || len(n) > MaxNameBytes || n == "." || n == ".." ||
			strings.ContainsAny(n, "/\\") || strings.IndexFunc(n, unicode.IsControl) >= 0 {
			t.Fatalf("CleanName(%q) = %q", in, n)
		}
		if again, err := CleanName(n); err != nil || again != n {
			t.Fatalf("CleanName not idempotent: %q -> %q -> %q, %v", in, n, again, err)
		}
		if p, err := CleanPath("/" + n); err != nil || p != "/"+n {
			t.Fatalf("name %q is not a clean path: %q, %v", n, p, err)
		}
	})
}
