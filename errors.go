package session

import "errors"

// Errors callers can match with errors.Is.
var (
	// ErrNoSession: Load was called on a request the Manager's middleware did not wrap.
	ErrNoSession = errors.New("session: no session in context (is the handler wrapped by Manager.Middleware?)")
	// ErrNotFound: the session does not exist, has expired, or was revoked.
	ErrNotFound = errors.New("session: not found")
	// ErrInvalidUserID: a user ID is empty or longer than MaxUserIDLength.
	ErrInvalidUserID = errors.New("session: invalid user ID")
	// ErrInvalidOptions: New or a store's constructor was given options it cannot honour.
	ErrInvalidOptions = errors.New("session: invalid options")
	// ErrNotInteger: Incr met a value that is not a 64-bit integer, or would overflow.
	ErrNotInteger = errors.New("session: value is not an integer or would overflow")
	// ErrHeadersWritten: a change needed a new cookie after the response
	// headers had gone out, so it could not be saved.
	ErrHeadersWritten = errors.New("session: response headers already written")
)
