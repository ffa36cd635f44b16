// Package filegate holds the files that the binary embeds from the
// repository root. The server itself lives in cmd/filegate, wired from the
// packages gateway, davfs, tus, policy and model.
package filegate

import _ "embed"

// CasbinModel is the text of casbin_model.conf, the access model every
// instance enforces.
//
//go:embed casbin_model.conf
var CasbinModel string
