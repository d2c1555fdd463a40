package session

import (
	"errors"
	"fmt"
)

// Errors callers can match with errors.Is.
var (
	// ErrNoSession: Load was called on a request the Manager's middleware did not wrap.
	ErrNoSession = errors.New("session: no session in context (is the handler wrapped by Manager.Middleware?)")
	// ErrNotFound: the session does not exist, has expired, or was revoked.
	ErrNotFound = errors.New("session: not found")
	// ErrInconsistent: the store holds something under a cookie's token that
	// is not that user's valid session (another user's, or a corrupt
	// record). It wraps ErrNotFound, so the session is anonymous, but unlike
	// an ordinary ending it is logged as a security event. Stores wrap it.
	ErrInconsistent = fmt.Errorf("%w: the stored session does not match its cookie", ErrNotFound)
	// ErrInvalidUserID: a user ID is empty or longer than MaxUserIDLength.
	ErrInvalidUserID = errors.New("session: invalid user ID")
	// ErrInvalidOptions: New or a store's constructor was given options it cannot honour.
	ErrInvalidOptions = errors.New("session: invalid options")
	// ErrNotInteger: Incr met a value that is not a 64-bit integer, or would overflow.
	ErrNotInteger = errors.New("session: value is not an integer or would overflow")
	// ErrWrongType: a typed getter (GetInt, GetBool, GetTime, GetJSON) met
	// a value that is not of its type.
	ErrWrongType = errors.New("session: value has the wrong type")
	// ErrHeadersWritten: a change needed a new cookie after the response
	// headers had gone out, so it could not be saved.
	ErrHeadersWritten = errors.New("session: response headers already written")
	// ErrRefused marks an error that is the store's answer rather than its
	// absence: the store is up and would not do the operation (for Redis, an
	// error reply: OOM, READONLY, WRONGTYPE, NOREPLICAS, MISCONF, a script
	// error). A Store wraps such errors with it (errors.Is(err, ErrRefused));
	// FallbackStore passes them to the caller and keeps using the primary,
	// while any error not so marked counts as an outage.
	ErrRefused = errors.New("session: store refused the operation")
	// ErrUnavailable: the primary store did not answer in time and the
	// operation could not safely be served from the fallback.
	ErrUnavailable = errors.New("session: store unavailable")
	// ErrSessionExists: Create found a session under the key already. With
	// 256-bit tokens this only happens when a create is replayed
	// (FallbackStore's recovery relies on telling it apart).
	ErrSessionExists = errors.New("session: a session with this token already exists")
)
