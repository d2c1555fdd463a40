package session

import (
	"context"
	"log/slog"
)

// eventLog tells the Logger and the Observer about lifecycle and security
// events. A token or a cookie value appears only as a keyed hash, so a log
// line can correlate events but never be turned back into a cookie.
type eventLog struct {
	logger   *slog.Logger
	observer Observer // nil: none
	hash     func([]byte) string
}

// notify passes an event to the Observer, if there is one.
func (l *eventLog) notify(kind EventKind, err error) {
	if l.observer != nil {
		l.observer.Observe(Event{Kind: kind, Err: err})
	}
}

// cookieRejected logs a cookie that did not open. The value may be a real
// cookie with a flipped bit, so it appears only as a keyed hash.
func (l *eventLog) cookieRejected(ctx context.Context, kind EventKind, msg, cookieValue string, err error) {
	l.notify(kind, err)
	l.logger.LogAttrs(ctx, slog.LevelWarn, msg, slog.String("cookie_hash", l.hash([]byte(cookieValue))), slog.String("reason", err.Error()))
}

// session logs a lifecycle or security event of one session.
func (l *eventLog) session(ctx context.Context, level slog.Level, msg string, tok token, userID string, err error, attrs ...slog.Attr) {
	if !l.logger.Enabled(ctx, level) {
		return
	}
	attrs = append(attrs, slog.String("token_hash", l.hash(tok[:])))
	if userID != "" {
		attrs = append(attrs, slog.String("user", userID))
	}
	if err != nil {
		attrs = append(attrs, slog.String("reason", err.Error()))
	}
	l.logger.LogAttrs(ctx, level, msg, attrs...)
}
