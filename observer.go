package session

import (
	"context"
	"time"
)

// Observer receives an Event for every store operation and every security
// event, so an application can export counters and latencies (Prometheus,
// OpenTelemetry, expvar) without this module depending on any of them.
// Observe runs synchronously on the request path: it must be fast, must not
// block, and must be safe for concurrent use.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }

// Event is one thing an Observer hears about.
type Event struct {
	Kind EventKind
	// Duration is how long the store took, for store operations.
	Duration time.Duration
	// Err is the store's error for store operations (ErrNotFound when a
	// load found no live session), or why, for security events.
	Err error
}

// EventKind names an Event. The values are stable, fit for metric labels.
type EventKind string

// Store operations: Duration and Err are set.
const (
	EventLoad   EventKind = "load"
	EventCreate EventKind = "create"
	EventUpdate EventKind = "update"
	EventIncr   EventKind = "incr"
	EventRotate EventKind = "rotate" // Login and Renew
	EventDelete EventKind = "delete" // Logout
	EventList   EventKind = "list"
	EventRevoke EventKind = "revoke" // Revoke, RevokeAll, LogoutOthers
)

// FallbackStore events: where calls go while the primary store is down.
const (
	EventPrimaryDown EventKind = "primary_down" // the breaker opened; Err says why
	EventFallback    EventKind = "fallback"     // a call served from memory; Err is its result
	EventPrimaryUp   EventKind = "primary_up"   // the outage was replayed and the breaker closed
)

// Lifecycle events: Err says why.
const (
	// EventSessionEnded: a valid cookie whose session ended (idle or
	// absolute expiry, logout, revocation). Ordinary: users come back late.
	EventSessionEnded EventKind = "session_ended"
)

// Security events: Err says why.
const (
	EventCookieRejected  EventKind = "cookie_rejected"  // forged, tampered, expired or malformed
	EventCookieAmbiguous EventKind = "cookie_ambiguous" // more than one session cookie
	EventTokenUnknown    EventKind = "token_unknown"    // a valid cookie whose stored session does not match it (ErrInconsistent)
	EventWriteRefused    EventKind = "write_refused"    // a write to a session that ended mid-request
)

// observedStore times every call of the Store it wraps. New installs it
// only when Options.Observer is set, so without one nothing is measured.
type observedStore struct {
	Store
	o Observer
}

func (s observedStore) done(kind EventKind, start time.Time, err error) {
	s.o.Observe(Event{Kind: kind, Duration: time.Since(start), Err: err})
}

func (s observedStore) Create(ctx context.Context, k Key, rec Record, p Policy) (Record, error) {
	start := time.Now()
	out, err := s.Store.Create(ctx, k, rec, p)
	s.done(EventCreate, start, err)
	return out, err
}

func (s observedStore) Load(ctx context.Context, k Key, c Client, p Policy) (Record, error) {
	start := time.Now()
	out, err := s.Store.Load(ctx, k, c, p)
	s.done(EventLoad, start, err)
	return out, err
}

func (s observedStore) Update(ctx context.Context, k Key, c Change, p Policy) error {
	start := time.Now()
	err := s.Store.Update(ctx, k, c, p)
	s.done(EventUpdate, start, err)
	return err
}

func (s observedStore) Incr(ctx context.Context, k Key, name string, delta int64, p Policy) (int64, error) {
	start := time.Now()
	n, err := s.Store.Incr(ctx, k, name, delta, p)
	s.done(EventIncr, start, err)
	return n, err
}

func (s observedStore) Rotate(ctx context.Context, r Rotation, p Policy) (Record, error) {
	start := time.Now()
	out, err := s.Store.Rotate(ctx, r, p)
	s.done(EventRotate, start, err)
	return out, err
}

func (s observedStore) Delete(ctx context.Context, k Key) error {
	start := time.Now()
	err := s.Store.Delete(ctx, k)
	s.done(EventDelete, start, err)
	return err
}

func (s observedStore) List(ctx context.Context, userID string) ([]Info, error) {
	start := time.Now()
	out, err := s.Store.List(ctx, userID)
	s.done(EventList, start, err)
	return out, err
}

func (s observedStore) Revoke(ctx context.Context, userID, id string) error {
	start := time.Now()
	err := s.Store.Revoke(ctx, userID, id)
	s.done(EventRevoke, start, err)
	return err
}

func (s observedStore) RevokeAll(ctx context.Context, userID string, keep Key) (int, error) {
	start := time.Now()
	n, err := s.Store.RevokeAll(ctx, userID, keep)
	s.done(EventRevoke, start, err)
	return n, err
}
