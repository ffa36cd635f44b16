package policy

import (
	"fmt"
	"strings"
	"sync"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"
)

// matcher is the matcher of casbin_model.conf after Casbin's parsing
// (r.x becomes r_x), without spaces. decide implements exactly this
// expression, so New refuses a model whose matcher says anything else.
const matcher = "actionMatch(r_act,p_act)&&((g(r_sub,p_sub)&&within(r_obj,p_obj))||granted(r_sub,p_sub,r_obj))"

// parseModel parses the model text and checks that it is the model decide
// implements: request and policy (sub, obj, act), g with two fields, g2
// with three, allow-override effect and the matcher above. It returns
// ErrModel otherwise.
func parseModel(text string) (model.Model, error) {
	m, err := model.NewModelFromString(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrModel, err)
	}
	want := map[string]string{
		"r.r":  "sub,obj,act",
		"p.p":  "sub,obj,act",
		"g.g":  "_,_",
		"g.g2": "_,_,_",
		"e.e":  "some(where(p_eft==allow))",
		"m.m":  matcher,
	}
	for _, sec := range []string{"r", "p", "g", "e", "m"} {
		if len(m[sec]) == 0 {
			return nil, fmt.Errorf("%w: section %s is missing", ErrModel, sec)
		}
		for key, ast := range m[sec] {
			w, ok := want[sec+"."+key]
			if !ok {
				return nil, fmt.Errorf("%w: %s.%s is not part of the enforced model", ErrModel, sec, key)
			}
			if got := strings.ReplaceAll(ast.Value, " ", ""); got != w {
				return nil, fmt.Errorf("%w: %s.%s is %q, this package enforces %q", ErrModel, sec, key, got, w)
			}
			delete(want, sec+"."+key)
		}
	}
	for k := range want {
		return nil, fmt.Errorf("%w: %s is missing", ErrModel, k)
	}
	return m, nil
}

// actionCache parses each p-line action once, so that the generic
// enforcer's actionMatch does not compile or split a pattern per call.
type actionCache struct{ m sync.Map }

func (c *actionCache) mask(p string) actMask {
	if v, ok := c.m.Load(p); ok {
		return v.(actMask)
	}
	mask, err := parseAction(p)
	if err != nil {
		mask = 0
	}
	c.m.Store(p, mask)
	return mask
}

// within reports whether pobj is "*" or one whole id of the lineage, so a
// rule on node A covers A's subtree and not a sibling whose id merely
// starts like A's.
func within(lineage, pobj string) bool {
	if pobj == AnyObject {
		return true
	}
	if lineage == AnyObject {
		return false
	}
	for rest := lineage; rest != ""; {
		var id string
		id, rest = nextSegment(rest)
		if id == pobj {
			return true
		}
	}
	return false
}

func strArgs(args []any, n int) ([]string, error) {
	if len(args) != n {
		return nil, fmt.Errorf("policy: want %d arguments, got %d", n, len(args))
	}
	out := make([]string, n)
	for i, a := range args {
		s, ok := a.(string)
		if !ok {
			return nil, fmt.Errorf("policy: argument %d is %T, not a string", i, a)
		}
		out[i] = s
	}
	return out, nil
}

// NewEnforcer returns a generic Casbin enforcer of the model that loads its
// policy through adapter, with the model's functions (actionMatch, within,
// granted) and this package's role managers for g and g2. It evaluates the
// matcher against every p line, so its cost grows with the number of
// direct rules; it exists as a reference for tools and tests, which check
// that Authorizer.Decide gives the same answers without that scan. It
// returns ErrModel for a model other than the one this package enforces,
// or the adapter's error.
func NewEnforcer(modelText string, adapter persist.Adapter) (*casbin.Enforcer, error) {
	m, err := parseModel(modelText)
	if err != nil {
		return nil, err
	}
	e, err := casbin.NewEnforcer(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrModel, err)
	}
	groups, grants := newMemberships(), newGrantIndex()
	e.SetNamedRoleManager("g", groups)
	e.SetNamedRoleManager("g2", grants)
	var actions actionCache
	e.AddFunction("actionMatch", func(args ...any) (any, error) {
		s, err := strArgs(args, 2)
		if err != nil {
			return nil, err
		}
		bit := actionBit(s[0])
		return bit != 0 && actions.mask(s[1])&bit != 0, nil
	})
	e.AddFunction("within", func(args ...any) (any, error) {
		s, err := strArgs(args, 2)
		if err != nil {
			return nil, err
		}
		return within(s[0], s[1]), nil
	})
	e.AddFunction("granted", func(args ...any) (any, error) {
		s, err := strArgs(args, 3)
		if err != nil {
			return nil, err
		}
		sub, level, lineage := s[0], s[1], s[2]
		if levelBit(level) == 0 || lineage == AnyObject {
			return false, nil
		}
		subs := groups.closure(sub, nil)
		for rest := lineage; rest != ""; {
			var id string
			id, rest = nextSegment(rest)
			for _, s := range subs {
				if grants.has(s, level, id) {
					return true, nil
				}
			}
		}
		return false, nil
	})
	e.SetAdapter(adapter)
	if err := e.LoadPolicy(); err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	return e, nil
}
