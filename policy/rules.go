package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Subjects and objects with a fixed meaning in the model.
const (
	// Anyone is the pseudo-subject every subject implicitly is: a grant or
	// rule for Anyone reaches every caller, anonymous ones included.
	Anyone = "anyone"
	// Anonymous is the subject of a request without credentials.
	Anonymous = "anonymous"
	// AdminRole is the role whose members may do everything.
	AdminRole = "role:admin"
	// AnyObject is the object of actions that are not about one node
	// (admin, view_files), and the p-line object meaning "every node".
	AnyObject = "*"
)

// Access levels, the roles that g2 grants give on a node's subtree.
const (
	LevelMetadata = "level:metadata"
	LevelRead     = "level:read"
	LevelFull     = "level:full"
)

// Actions a request may ask for.
const (
	ActStat      = "stat"
	ActRead      = "read"
	ActWrite     = "write"
	ActDelete    = "delete"
	ActShare     = "share"
	ActAdmin     = "admin"
	ActViewFiles = "view_files"
)

// User returns the subject of the user account name.
func User(name string) string { return "user:" + name }

// Token returns the subject of the file token id.
func Token(id string) string { return "token:" + id }

// Group returns the subject of the group name.
func Group(name string) string { return "group:" + name }

// Level returns the level role for a level name such as "read".
func Level(name string) string { return "level:" + name }

// Grant returns the g2 line granting level on the subtree of nodeID to
// subject.
func Grant(subject, level, nodeID string) []string {
	return []string{"g2", subject, level, nodeID}
}

// Membership returns the g line making member part of role (a group or
// role:admin).
func Membership(member, role string) []string {
	return []string{"g", member, role}
}

// Allow returns the p line letting subject do act (one action, "*", or an
// alternation like "(stat|read)") on the subtree of nodeID, or everywhere
// when nodeID is AnyObject.
func Allow(subject, nodeID, act string) []string {
	return []string{"p", subject, nodeID, act}
}

// builtin lines are seeded into every database and cannot be removed: the
// admin role and the meaning of the three levels.
var builtin = [][]string{
	{"p", AdminRole, AnyObject, "*"},
	{"p", LevelMetadata, AnyObject, ActStat},
	{"p", LevelRead, AnyObject, "(stat|read)"},
	{"p", LevelFull, AnyObject, "(stat|read|write|delete|share)"},
}

// Builtin returns the lines every database holds: the admin rule and the
// three level definitions.
func Builtin() [][]string {
	out := make([][]string, len(builtin))
	for i, l := range builtin {
		out[i] = slices.Clone(l)
	}
	return out
}

func isBuiltin(line []string) bool {
	for _, b := range builtin {
		if slices.Equal(b, line) {
			return true
		}
	}
	return false
}

// actMask is a set of actions, one bit each, so that an alternation like
// "(stat|read)" is parsed once when the rule is loaded and matching a
// request is a single AND.
type actMask uint8

const allActions actMask = 1<<7 - 1

func actionBit(act string) actMask {
	switch act {
	case ActStat:
		return 1 << 0
	case ActRead:
		return 1 << 1
	case ActWrite:
		return 1 << 2
	case ActDelete:
		return 1 << 3
	case ActShare:
		return 1 << 4
	case ActAdmin:
		return 1 << 5
	case ActViewFiles:
		return 1 << 6
	}
	return 0
}

// parseAction parses a p line's action: "*", one action, or "(a|b|c)".
func parseAction(p string) (actMask, error) {
	if p == "*" {
		return allActions, nil
	}
	if bit := actionBit(p); bit != 0 {
		return bit, nil
	}
	inner, ok := strings.CutPrefix(p, "(")
	if inner, ok2 := strings.CutSuffix(inner, ")"); ok && ok2 {
		var m actMask
		for _, a := range strings.Split(inner, "|") {
			bit := actionBit(a)
			if bit == 0 {
				return 0, fmt.Errorf("%w: unknown action %q in %q", ErrInvalid, a, p)
			}
			m |= bit
		}
		return m, nil
	}
	return 0, fmt.Errorf("%w: action %q is not *, a known action or (a|b|...)", ErrInvalid, p)
}

// levels is the index of each level in a levelMask.
var levels = [...]string{LevelMetadata, LevelRead, LevelFull}

type levelMask uint8

func levelBit(level string) levelMask {
	for i, l := range levels {
		if l == level {
			return 1 << i
		}
	}
	return 0
}

// arity is the number of values of each ptype of the model.
var arity = map[string]int{"p": 3, "g": 2, "g2": 3}

type subjectKind int

const (
	kindInvalid subjectKind = iota
	kindUser
	kindToken
	kindGroup
	kindRole
	kindLevel
	kindAnonymous
	kindAnyone
)

func kindOf(s string) subjectKind {
	switch s {
	case Anonymous:
		return kindAnonymous
	case Anyone:
		return kindAnyone
	}
	prefix, name, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return kindInvalid
	}
	switch prefix {
	case "user":
		return kindUser
	case "token":
		return kindToken
	case "group":
		return kindGroup
	case "role":
		return kindRole
	case "level":
		if levelBit(s) == 0 {
			return kindInvalid
		}
		return kindLevel
	}
	return kindInvalid
}

// checkField rejects values that are empty or could not round-trip through
// a CSV line or a lineage: whitespace, control characters, commas, quotes.
func checkField(v string) error {
	if v == "" {
		return fmt.Errorf("%w: empty field", ErrInvalid)
	}
	if len(v) > 512 {
		return fmt.Errorf("%w: field longer than 512 bytes", ErrInvalid)
	}
	for _, r := range v {
		if r <= ' ' || r == 0x7f || r == ',' || r == '"' {
			return fmt.Errorf("%w: field %q holds whitespace, a control character, a comma or a quote", ErrInvalid, v)
		}
	}
	return nil
}

func checkNode(v string) error {
	if v == AnyObject || strings.ContainsAny(v, "/*") {
		return fmt.Errorf("%w: %q is not a node id", ErrInvalid, v)
	}
	return nil
}

// Validate checks one line (ptype followed by its values) against the
// access model and returns ErrInvalid, saying why, when it does not fit:
//
//   - p, subject, object, action: subject is user:, token:, group:, role:,
//     level:<known level>, anonymous or anyone; object is "*" or a node id;
//     action is "*", a known action or "(a|b|...)". A level's p line must
//     have object "*", because grants ignore the p line's object.
//   - g, member, role: member is a user, token, group, role or anonymous;
//     role is a group or a role; they differ.
//   - g2, subject, level, node: subject is a user, token, group, role,
//     anonymous or anyone; level is one of the three levels; node is a
//     node id.
//
// Every field must be non-empty, without whitespace, commas or quotes.
func Validate(line []string) error {
	if len(line) == 0 {
		return fmt.Errorf("%w: empty line", ErrInvalid)
	}
	n, ok := arity[line[0]]
	if !ok {
		return fmt.Errorf("%w: unknown ptype %q", ErrInvalid, line[0])
	}
	if len(line)-1 != n {
		return fmt.Errorf("%w: %s line needs %d values, got %d", ErrInvalid, line[0], n, len(line)-1)
	}
	for _, v := range line[1:] {
		if err := checkField(v); err != nil {
			return err
		}
	}
	switch line[0] {
	case "p":
		return validateP(line[1], line[2], line[3])
	case "g":
		return validateG(line[1], line[2])
	default:
		return validateG2(line[1], line[2], line[3])
	}
}

func validateP(sub, obj, act string) error {
	k := kindOf(sub)
	if k == kindInvalid {
		return fmt.Errorf("%w: unknown subject %q", ErrInvalid, sub)
	}
	if obj != AnyObject {
		if err := checkNode(obj); err != nil {
			return err
		}
		if k == kindLevel {
			return fmt.Errorf("%w: a level's rule must have object *", ErrInvalid)
		}
	}
	_, err := parseAction(act)
	return err
}

func validateG(member, role string) error {
	switch kindOf(member) {
	case kindUser, kindToken, kindGroup, kindRole, kindAnonymous:
	default:
		return fmt.Errorf("%w: %q cannot be a member", ErrInvalid, member)
	}
	switch kindOf(role) {
	case kindGroup, kindRole:
	default:
		return fmt.Errorf("%w: %q is not a group or role", ErrInvalid, role)
	}
	if member == role {
		return fmt.Errorf("%w: %q cannot be a member of itself", ErrInvalid, member)
	}
	return nil
}

func validateG2(sub, level, node string) error {
	switch kindOf(sub) {
	case kindUser, kindToken, kindGroup, kindRole, kindAnonymous, kindAnyone:
	default:
		return fmt.Errorf("%w: %q cannot hold a grant", ErrInvalid, sub)
	}
	if levelBit(level) == 0 {
		return fmt.Errorf("%w: unknown level %q", ErrInvalid, level)
	}
	return checkNode(node)
}
