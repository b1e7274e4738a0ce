package telemetry

import (
	"context"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Slog returns a *slog.Logger that writes to log, for libraries (Prometheus'
// handlers) that take one.
func Slog(log *zap.Logger) *slog.Logger {
	if log == nil {
		log = zap.NewNop()
	}
	return slog.New(&slogHandler{log: log.WithOptions(zap.AddCallerSkip(3))})
}

type slogHandler struct {
	log    *zap.Logger
	prefix string
}

func zapLevel(l slog.Level) zapcore.Level {
	switch {
	case l >= slog.LevelError:
		return zapcore.ErrorLevel
	case l >= slog.LevelWarn:
		return zapcore.WarnLevel
	case l >= slog.LevelInfo:
		return zapcore.InfoLevel
	default:
		return zapcore.DebugLevel
	}
}

func (h *slogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.log.Core().Enabled(zapLevel(l))
}

func (h *slogHandler) Handle(_ context.Context, r slog.Record) error {
	ce := h.log.Check(zapLevel(r.Level), r.Message)
	if ce == nil {
		return nil
	}
	fields := make([]zap.Field, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		fields = append(fields, zap.Any(h.prefix+a.Key, a.Value.Resolve().Any()))
		return true
	})
	ce.Write(fields...)
	return nil
}

func (h *slogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	fields := make([]zap.Field, 0, len(attrs))
	for _, a := range attrs {
		fields = append(fields, zap.Any(h.prefix+a.Key, a.Value.Resolve().Any()))
	}
	return &slogHandler{log: h.log.With(fields...), prefix: h.prefix}
}

func (h *slogHandler) WithGroup(name string) slog.Handler {
	return &slogHandler{log: h.log, prefix: h.prefix + name + "."}
}
