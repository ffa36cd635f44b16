package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/filegate/filegate/gateway"
)

// openAPI checks answers against the embedded OpenAPI document: the
// status must be documented for the operation, and a JSON body must match
// its schema. It understands the subset the document uses: $ref, type,
// nullable, required, properties, items, enum, anyOf, oneOf and the
// date-time format.
type openAPI struct {
	doc     map[string]any
	mu      sync.Mutex
	checked map[string]bool
}

func loadOpenAPI(t *testing.T) *openAPI {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(gateway.OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return &openAPI{doc: doc, checked: map[string]bool{}}
}

func (o *openAPI) operation(method, path string) (map[string]any, string) {
	rel := strings.TrimPrefix(path, "/api/v1")
	paths := o.doc["paths"].(map[string]any)
	best, bestScore := "", -1
	for tmpl := range paths {
		ts, ps := strings.Split(tmpl, "/"), strings.Split(rel, "/")
		if len(ts) != len(ps) {
			continue
		}
		score := 0
		ok := true
		for i := range ts {
			switch {
			case ts[i] == ps[i]:
				score++
			case strings.HasPrefix(ts[i], "{") && ps[i] != "":
			default:
				ok = false
			}
		}
		if ok && score > bestScore {
			best, bestScore = tmpl, score
		}
	}
	if best == "" {
		return nil, ""
	}
	if method == http.MethodHead {
		method = http.MethodGet
	}
	op, _ := paths[best].(map[string]any)[strings.ToLower(method)].(map[string]any)
	return op, best
}

func (o *openAPI) check(t *testing.T, method, path string, r result) {
	t.Helper()
	op, tmpl := o.operation(method, path)
	if op == nil {
		if r.status == http.StatusNotFound {
			return // an unknown route answers the documented JSON 404
		}
		t.Errorf("openapi: %s %s is not documented (answered %d)", method, path, r.status)
		return
	}
	responses := op["responses"].(map[string]any)
	spec, ok := responses[strconv.Itoa(r.status)]
	if !ok {
		t.Errorf("openapi: %s %s: status %d is not documented (%s)", method, tmpl, r.status, r.body)
		return
	}
	o.mu.Lock()
	o.checked[fmt.Sprintf("%s %s %d", method, tmpl, r.status)] = true
	o.mu.Unlock()
	resp := o.resolve(spec.(map[string]any))
	content, _ := resp["content"].(map[string]any)
	js, ok := content["application/json"].(map[string]any)
	if !ok || method == http.MethodHead {
		return
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("openapi: %s %s %d: Content-Type %q, documented JSON", method, tmpl, r.status, ct)
		return
	}
	var body any
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Errorf("openapi: %s %s %d: body is not JSON: %v", method, tmpl, r.status, err)
		return
	}
	if err := o.validate(js["schema"].(map[string]any), body, "body"); err != nil {
		t.Errorf("openapi: %s %s %d: %v\n%s", method, tmpl, r.status, err, r.body)
	}
}

func (o *openAPI) resolve(s map[string]any) map[string]any {
	for {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		cur := any(o.doc)
		for _, p := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cur = cur.(map[string]any)[p]
		}
		s = cur.(map[string]any)
	}
}

func (o *openAPI) validate(schema map[string]any, v any, at string) error {
	s := o.resolve(schema)
	if v == nil {
		if nb, _ := s["nullable"].(bool); nb || len(s) == 0 {
			return nil
		}
		return fmt.Errorf("%s is null", at)
	}
	for _, key := range []string{"anyOf", "oneOf"} {
		if alts, ok := s[key].([]any); ok {
			var errs []string
			for _, alt := range alts {
				err := o.validate(alt.(map[string]any), v, at)
				if err == nil {
					return nil
				}
				errs = append(errs, err.Error())
			}
			return fmt.Errorf("%s matches none of %s: %s", at, key, strings.Join(errs, "; "))
		}
	}
	switch s["type"] {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s is %T, want an object", at, v)
		}
		for _, req := range asList(s["required"]) {
			if _, ok := m[req.(string)]; !ok {
				return fmt.Errorf("%s lacks required %q", at, req)
			}
		}
		props, _ := s["properties"].(map[string]any)
		for k, pv := range m {
			if ps, ok := props[k].(map[string]any); ok {
				if err := o.validate(ps, pv, at+"."+k); err != nil {
					return err
				}
			}
		}
	case "array":
		l, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s is %T, want an array", at, v)
		}
		if items, ok := s["items"].(map[string]any); ok {
			for i, x := range l {
				if err := o.validate(items, x, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s is %T, want a string", at, v)
		}
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				return fmt.Errorf("%s = %q is not a date-time", at, str)
			}
		}
	case "integer":
		f, ok := v.(float64)
		if !ok || f != float64(int64(f)) {
			return fmt.Errorf("%s is %v, want an integer", at, v)
		}
	case "number":
		if _, ok := v.(float64); !ok {
			return fmt.Errorf("%s is %T, want a number", at, v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s is %T, want a boolean", at, v)
		}
	}
	if enum := asList(s["enum"]); len(enum) > 0 {
		for _, e := range enum {
			if e == v {
				return nil
			}
		}
		return fmt.Errorf("%s = %v is not one of %v", at, v, enum)
	}
	return nil
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// TestOpenAPIDocument checks that the served document is the embedded
// one, is OpenAPI 3, documents every route the server answers, and that
// the validator rejects what it must.
func TestOpenAPIDocument(t *testing.T) {
	oa := loadOpenAPI(t)
	if v, _ := oa.doc["openapi"].(string); !strings.HasPrefix(v, "3.") {
		t.Fatalf("openapi version %q", v)
	}
	for _, route := range []string{"GET /api/v1/files", "POST /api/v1/files", "GET /api/v1/files/x", "PATCH /api/v1/files/x",
		"DELETE /api/v1/files/x", "POST /api/v1/files/x/restore", "GET /api/v1/files/x/content", "PUT /api/v1/files/x/content",
		"GET /api/v1/files/x/tokens", "POST /api/v1/files/x/tokens", "DELETE /api/v1/files/x/tokens/y", "GET /api/v1/files/x/grants",
		"POST /api/v1/files/x/grants", "DELETE /api/v1/files/x/grants", "PUT /api/v1/files/x/public", "POST /api/v1/files/x/links",
		"GET /api/v1/links/x", "GET /api/v1/settings/files", "PUT /api/v1/settings/files", "POST /api/v1/settings/links/rotate",
		"GET /api/v1/audit", "GET /api/v1/openapi.json", "GET /api/v1/files/first",
		"GET /api/v1/users", "POST /api/v1/users", "GET /api/v1/users/x", "PATCH /api/v1/users/x"} {
		method, path, _ := strings.Cut(route, " ")
		if op, _ := oa.operation(method, path); op == nil {
			t.Errorf("%s is not documented", route)
		}
	}
	fm := map[string]any{"$ref": "#/components/schemas/FileMetadata"}
	if err := oa.validate(fm, map[string]any{"id": "x"}, "body"); err == nil {
		t.Error("a FileMetadata without required fields passed")
	}
	errSchema := map[string]any{"$ref": "#/components/schemas/Error"}
	if err := oa.validate(errSchema, map[string]any{"error": map[string]any{"code": "x"}}, "body"); err == nil {
		t.Error("an error without message passed")
	}
	if err := oa.validate(errSchema, map[string]any{"error": map[string]any{"code": "x", "message": "y"}}, "body"); err != nil {
		t.Errorf("a valid error failed: %v", err)
	}
}
