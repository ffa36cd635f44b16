package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// statusOf is the one table from sentinel errors to HTTP status and error
// code. Bodies carry the code and a fixed message, never err.Error(), so no
// path, SQL or stack trace leaks to a client.
var statusOf = []struct {
	err     error
	status  int
	code    string
	message string
}{
	{model.ErrNotFound, http.StatusNotFound, "not_found", "The resource does not exist."},
	{model.ErrExists, http.StatusConflict, "exists", "A resource with that name already exists."},
	{model.ErrConflict, http.StatusConflict, "conflict", "The request conflicts with the current state."},
	{model.ErrInvalid, http.StatusBadRequest, "invalid", "The request is malformed."},
	{policy.ErrInvalid, http.StatusBadRequest, "invalid_rule", "A policy rule is malformed."},
	{model.ErrNotEmpty, http.StatusConflict, "not_empty", "The folder is not empty."},
	{model.ErrPrecondition, http.StatusPreconditionFailed, "precondition_failed", "A precondition did not hold."},
	{model.ErrLocked, http.StatusLocked, "locked", "A WebDAV lock protects the resource; its holder must release it first."},
	{model.ErrUnavailable, http.StatusServiceUnavailable, "unavailable", "The service is temporarily unavailable; retry later."},
	{model.ErrQuota, http.StatusInsufficientStorage, "quota_exceeded", "The write would exceed your storage quota."},
	{model.ErrNoSpace, http.StatusInsufficientStorage, "insufficient_storage", "There is not enough storage space."},
	{model.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large", "The request body is too large."},
	{model.ErrCorrupt, http.StatusInternalServerError, "damaged", "The file's stored bytes are damaged; an administrator must restore them."},
	{context.Canceled, 499, "canceled", "The request was canceled."},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "timeout", "The request timed out; retry later."},
	// The body stopped arriving for Config.BodyIdleTimeout.
	{os.ErrDeadlineExceeded, http.StatusRequestTimeout, "body_timeout", "The request body stopped arriving."},
}

// ErrorStatus returns the HTTP status, code and public message for err.
// Unknown errors are 500 "internal".
func ErrorStatus(err error) (status int, code, message string) {
	for _, e := range statusOf {
		if errors.Is(err, e.err) {
			return e.status, e.code, e.message
		}
	}
	// A raw driver error that reached here unmapped may still mean a full
	// disk or a database away; those are 507 and 503, not 500.
	if m := model.DBErr(err); errors.Is(m, model.ErrNoSpace) || errors.Is(m, model.ErrUnavailable) || errors.Is(m, model.ErrInvalid) {
		return ErrorStatus(m)
	}
	return http.StatusInternalServerError, "internal", "An internal error occurred."
}

// errorBody is the JSON shape of every API error.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeJSONError answers with {"error": {"code", "message"}}. 503 answers
// carry Retry-After so clients back off instead of hammering.
func writeJSONError(w http.ResponseWriter, status int, code, message string) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	var b errorBody
	b.Error.Code, b.Error.Message = code, message
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(b)
}

// writeError answers err through the status table, logging unexpected
// errors (with the request id) so a 500 is never silent.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := ErrorStatus(err)
	if status >= 500 && status != http.StatusServiceUnavailable && status != http.StatusInsufficientStorage {
		s.logger(r.Context()).Error("request failed", "err", err)
	}
	writeJSONError(w, status, code, msg)
}
