package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"

	"github.com/filegate/filegate/model"
)

// TestErrorStatusRawDriverErrors checks that driver errors which reach the
// table without a sentinel still say what they mean: a full disk is 507
// and an unreachable database 503, while an unknown error stays 500.
func TestErrorStatusRawDriverErrors(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tt := range []struct {
		name string
		err  error
		want int
	}{
		{"sentinel", fmt.Errorf("put: %w", model.ErrNoSpace), http.StatusInsufficientStorage},
		{"sqlite full", errors.New("database or disk is full (13)"), http.StatusInsufficientStorage},
		{"enospc", fmt.Errorf("write wal: %w", syscall.ENOSPC), http.StatusInsufficientStorage},
		{"refused", fmt.Errorf("query: %w", refused), http.StatusServiceUnavailable},
		{"pg shutting down", errors.New("FATAL: terminating connection due to administrator command"), http.StatusServiceUnavailable},
		{"deadline", context.DeadlineExceeded, http.StatusServiceUnavailable},
		{"unknown", errors.New("boom"), http.StatusInternalServerError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got, _, _ := ErrorStatus(tt.err); got != tt.want {
				t.Errorf("ErrorStatus(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}
