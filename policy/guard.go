package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Errors of the guardrails. They are refusals of a well-formed change, so
// the gateway answers them with 409 rather than 400.
var (
	// ErrLastAdmin means the change would leave no enabled user who may
	// administer filegate. Nothing forces it through: an instance without
	// an admin can only be repaired from the command line.
	ErrLastAdmin = errors.New("the change would leave no administrator")
	// ErrUnsafe means the change grants something to anonymous callers
	// (or to anyone, which includes them) or opens every file to some
	// subject; it goes through only when forced.
	ErrUnsafe = errors.New("the change opens access to everyone or to every file")
)

// Risk is one added line the guardrails refuse unless forced, and why.
type Risk struct {
	Line   []string `json:"line"`
	Reason string   `json:"reason"`
}

// GuardOptions say what Guard checks a change against.
type GuardOptions struct {
	// Users are the subjects ("user:<name>") of the enabled accounts;
	// Guard refuses a change after which none of them would be an admin
	// while one of them is now.
	Users []string
	// RootID is the id of the root folder: a grant or rule on it reaches
	// every file.
	RootID string
	// Force lets risky additions through; it never overrides ErrLastAdmin.
	Force bool
}

// Guard checks a change against the guardrails before it is applied. It
// returns the risky additions it found (also when forced, so a caller can
// record them), and ErrUnsafe (wrapped, naming the first risk) when there
// are some and o.Force is false, or ErrLastAdmin when the change would
// remove the last admin among o.Users. It returns ErrInvalid when the
// change does not fit the model and the database's error when a
// RemoveMatching filter cannot be expanded. Guard and the later Apply are
// two steps: callers that must not race another admin's change serialise
// them.
func (a *Authorizer) Guard(ctx context.Context, ch Change, o GuardOptions) ([]Risk, error) {
	if err := ch.validate(); err != nil {
		return nil, err
	}
	risks := Risks(ch, o.RootID)
	if len(risks) > 0 && !o.Force {
		return risks, fmt.Errorf("%w: %s: %s", ErrUnsafe, strings.Join(risks[0].Line, ", "), risks[0].Reason)
	}
	now, after, err := a.Admins(ctx, ch, o.Users)
	if err != nil {
		return risks, err
	}
	if len(now) > 0 && len(after) == 0 {
		return risks, ErrLastAdmin
	}
	return risks, nil
}

// Admins returns which of users may administer filegate now, and which
// would after ch, deciding (user, admin, *) against the current policy and
// a scratch copy with ch applied. It returns ErrInvalid when ch does not
// fit the model and the database's error when a filter cannot be expanded.
func (a *Authorizer) Admins(ctx context.Context, ch Change, users []string) (now, after []string, err error) {
	qs := make([]Query, len(users))
	for i, u := range users {
		qs[i] = Query{Subject: u, Action: ActAdmin, Object: AnyObject}
	}
	for len(qs) > 0 {
		n := min(len(qs), MaxWhatIfQueries)
		before, later, err := a.evaluate(ctx, ch, qs[:n])
		if err != nil {
			return nil, nil, err
		}
		for i := range n {
			if before[i].Allowed {
				now = append(now, qs[i].Subject)
			}
			if later[i].Allowed {
				after = append(after, qs[i].Subject)
			}
		}
		qs = qs[n:]
	}
	return now, after, nil
}

// nodeActions are the actions about files; a line allowing any of them
// everywhere opens every file.
const nodeActions = 1<<0 | 1<<1 | 1<<2 | 1<<3 | 1<<4

// Risks lists the additions of ch that the guardrails refuse unless
// forced: any line whose subject (or member) is anonymous or anyone, a p
// line allowing a file action on every node ("*") to anyone but the
// built-in levels and the admin role, and a rule or grant on the root
// folder rootID. Lines that do not fit the model are skipped; Validate
// reports them.
func Risks(ch Change, rootID string) []Risk {
	var out []Risk
	for _, l := range ch.Add {
		if Validate(l) != nil {
			continue
		}
		if r := riskOf(l, rootID); r != "" {
			out = append(out, Risk{Line: l, Reason: r})
		}
	}
	return out
}

func riskOf(l []string, rootID string) string {
	sub := l[1]
	if sub == Anonymous || sub == Anyone {
		return "it gives access to anonymous callers (anyone includes them)"
	}
	switch l[0] {
	case "p":
		if kindOf(sub) == kindLevel || sub == AdminRole {
			return ""
		}
		mask, _ := parseAction(l[3])
		switch {
		case l[2] == AnyObject && mask&nodeActions != 0:
			return fmt.Sprintf("it lets %s %s every file", sub, l[3])
		case rootID != "" && l[2] == rootID && mask&nodeActions != 0:
			return fmt.Sprintf("it lets %s %s everything under the root folder, that is every file", sub, l[3])
		}
	case "g2":
		if rootID != "" && l[3] == rootID {
			return fmt.Sprintf("it grants %s %s on the root folder, that is on every file", sub, l[2])
		}
	}
	return ""
}
