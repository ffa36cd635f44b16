package policy

import "errors"

// Sentinel errors of the policy package. They are the package's own rather
// than model's so that policy and model stay independent siblings; the
// gateway maps ErrInvalid to 400 like model.ErrInvalid.
var (
	// ErrInvalid means a rule, filter, change or CSV line does not fit the
	// access model: an unknown ptype, a wrong number of fields, an empty
	// or malformed field, an unknown level or action, or an attempt to
	// remove a built-in rule.
	ErrInvalid = errors.New("invalid policy rule")
	// ErrModel means the Casbin model text does not parse or is not the
	// model this package enforces (its ptypes, arities or matcher differ).
	ErrModel = errors.New("unsupported access model")
)
