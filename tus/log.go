package tus

import (
	"context"
	"log/slog"

	xslog "golang.org/x/exp/slog"
)

// bridgeLogger hands tusd's log (golang.org/x/exp/slog) to ours, keeping
// warnings and errors only: tusd logs several lines per request at info,
// which the gateway's access log already covers.
func bridgeLogger(l *slog.Logger) *xslog.Logger {
	return xslog.New(bridge{l: l})
}

type bridge struct {
	l     *slog.Logger
	attrs []any
}

func (b bridge) Enabled(ctx context.Context, lvl xslog.Level) bool {
	return lvl >= xslog.LevelWarn && b.l.Enabled(ctx, slog.Level(lvl))
}

func (b bridge) Handle(ctx context.Context, r xslog.Record) error {
	args := append([]any{}, b.attrs...)
	r.Attrs(func(a xslog.Attr) bool {
		args = append(args, a.Key, a.Value.Any())
		return true
	})
	b.l.Log(ctx, slog.Level(r.Level), "tusd: "+r.Message, args...)
	return nil
}

func (b bridge) WithAttrs(as []xslog.Attr) xslog.Handler {
	n := bridge{l: b.l, attrs: append([]any{}, b.attrs...)}
	for _, a := range as {
		n.attrs = append(n.attrs, a.Key, a.Value.Any())
	}
	return n
}

func (b bridge) WithGroup(string) xslog.Handler { return b }
