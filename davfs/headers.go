package davfs

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/filegate/filegate/model"
)

// Depth values; depthAbsent means the header was not sent.
const (
	depthAbsent   = -2
	depthInfinity = -1
)

// parseDepth reads the Depth header: "0", "1" or "infinity". Anything
// else is ErrInvalid.
func parseDepth(v string) (int, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "":
		return depthAbsent, nil
	case "0":
		return 0, nil
	case "1":
		return 1, nil
	case "infinity":
		return depthInfinity, nil
	}
	return 0, fmt.Errorf("%w: Depth header %q", model.ErrInvalid, v)
}

// parseOverwrite reads the Overwrite header; absent means true.
func parseOverwrite(v string) (bool, error) {
	switch strings.TrimSpace(v) {
	case "", "T", "t":
		return true, nil
	case "F", "f":
		return false, nil
	}
	return false, fmt.Errorf("%w: Overwrite header %q", model.ErrInvalid, v)
}

// parseTimeout reads the Timeout header ("Infinite", "Second-N", a comma
// list of them). It returns 0 for absent or Infinite, which capTimeout
// turns into the maximum, and ErrInvalid when no entry is well-formed.
func parseTimeout(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if strings.EqualFold(part, "Infinite") {
			return 0, nil
		}
		if len(part) > 7 && strings.EqualFold(part[:7], "Second-") {
			digits := part[7:]
			if len(digits) > 10 {
				return MaxLockTimeout, nil
			}
			n, err := strconv.ParseUint(digits, 10, 32)
			if err != nil {
				continue
			}
			if n == 0 {
				n = 1
			}
			return time.Duration(n) * time.Second, nil
		}
	}
	return 0, fmt.Errorf("%w: Timeout header %q", model.ErrInvalid, v)
}

// ifCondition is one condition of an If header list: a state token or an
// entity tag, possibly negated.
type ifCondition struct {
	not   bool
	token string
	etag  string
}

// ifList is a list of conditions that must all hold, optionally tagged
// with the resource it is about.
type ifList struct {
	tag   string
	conds []ifCondition
}

// ifHeader is a parsed If header: it holds when any list holds.
type ifHeader struct {
	lists []ifList
}

// parseIf parses an If header (RFC 4918 section 10.4). It returns
// ErrInvalid for anything malformed, including a mix of tagged and
// untagged lists.
func parseIf(v string) (*ifHeader, error) {
	bad := func(why string) (*ifHeader, error) {
		return nil, fmt.Errorf("%w: If header: %s", model.ErrInvalid, why)
	}
	if len(v) > 16<<10 {
		return bad("too long")
	}
	s := v
	h := &ifHeader{}
	tagged := -1
	tag := ""
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			break
		}
		switch s[0] {
		case '<':
			if tagged == 0 {
				return bad("tagged and untagged lists mixed")
			}
			tagged = 1
			end := strings.IndexByte(s, '>')
			if end < 0 {
				return bad("unterminated resource tag")
			}
			tag = s[1:end]
			if tag == "" {
				return bad("empty resource tag")
			}
			s = s[end+1:]
			s = strings.TrimLeft(s, " \t")
			if s == "" || s[0] != '(' {
				return bad("resource tag without a list")
			}
		case '(':
			if tagged == -1 {
				tagged = 0
			}
			list, rest, err := parseIfList(s[1:])
			if err != nil {
				return nil, err
			}
			list.tag = tag
			h.lists = append(h.lists, list)
			s = rest
		default:
			return bad("unexpected character")
		}
	}
	if len(h.lists) == 0 {
		return bad("no list")
	}
	return h, nil
}

func parseIfList(s string) (ifList, string, error) {
	var l ifList
	bad := func(why string) (ifList, string, error) {
		return l, "", fmt.Errorf("%w: If header: %s", model.ErrInvalid, why)
	}
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return bad("unterminated list")
		}
		if s[0] == ')' {
			if len(l.conds) == 0 {
				return bad("empty list")
			}
			return l, s[1:], nil
		}
		var c ifCondition
		if len(s) >= 3 && strings.EqualFold(s[:3], "Not") {
			c.not = true
			s = strings.TrimLeft(s[3:], " \t")
		}
		if s == "" {
			return bad("unterminated list")
		}
		switch s[0] {
		case '<':
			end := strings.IndexByte(s, '>')
			if end < 0 {
				return bad("unterminated state token")
			}
			c.token = s[1:end]
			if c.token == "" || strings.ContainsAny(c.token, " \t") {
				return bad("malformed state token")
			}
			s = s[end+1:]
		case '[':
			end := etagEnd(s)
			if end < 0 {
				return bad("unterminated entity tag")
			}
			c.etag = strings.TrimSpace(s[1:end])
			if c.etag == "" {
				return bad("empty entity tag")
			}
			s = s[end+1:]
		default:
			return bad("unexpected character in list")
		}
		l.conds = append(l.conds, c)
	}
}

// etagEnd finds the "]" closing an entity tag that starts s, skipping
// brackets inside the quoted tag.
func etagEnd(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case ']':
			if !quoted {
				return i
			}
		}
	}
	return -1
}

// tokens returns the state tokens the header submits: those in
// conditions that are not negated.
func (h *ifHeader) tokens() []string {
	if h == nil {
		return nil
	}
	var out []string
	for _, l := range h.lists {
		for _, c := range l.conds {
			if c.token != "" && !c.not {
				out = append(out, c.token)
			}
		}
	}
	return out
}

// offersTokens reports whether the header names a lock token other than
// the never-matching DAV:no-lock.
func (h *ifHeader) offersTokens() bool {
	for _, t := range h.tokens() {
		if t != "DAV:no-lock" {
			return true
		}
	}
	return false
}

// etagMatch compares entity tags, ignoring weakness.
func etagMatch(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}
