package gateway

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the OpenAPI 3 description of the files API; the tests
// check real answers against it.
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the OpenAPI 3 document of the files API.
func OpenAPI() []byte { return append([]byte(nil), openAPIDoc...) }

// openAPI serves GET /api/v1/openapi.json to anyone.
func (a *api) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(openAPIDoc)
}
