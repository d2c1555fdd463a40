package session

import (
	"context"
	"time"
)

// Store keeps sessions for a Manager. The doc comments of its methods are
// the contract every implementation must meet; package sessiontest checks it.
//
// Common to every method:
//   - A session is named by a Key: its user and the hash of its token. A
//     Store never sees the token itself.
//   - A session that is missing, expired (idle or absolute), revoked, or
//     whose stored user differs from Key.UserID does not exist: methods
//     return ErrNotFound, never someone else's data.
//   - An error that wraps ErrRefused is the store's answer: it is up and
//     refused the operation, and nothing of it was applied or it would have
//     been reported as done. Any other error means the store could not
//     answer (it is down, slow or unreachable), and the operation may or
//     may not have been applied.
//   - No write brings back a session that no longer exists.
//   - Idle and absolute expiry are the store's job, measured by its own clock.
//   - Implementations are safe for concurrent use.
//   - A Record passed in or returned, and its Values, are the caller's:
//     the store keeps no reference to them (a Session keeps and changes
//     the map Load returns rather than copy it).
type Store interface {
	// Create stores a new session under k. rec gives its ID, user agent,
	// IP and values; the store sets LastSeen to now and, unless rec.Expires
	// is set (a session restored after an outage keeps its times), Created
	// to now and Expires to now + p.Lifetime. It returns the record as
	// stored. A user's session joins that user's index; if
	// p.MaxSessionsPerUser is exceeded, the user's least recently seen other
	// session is revoked. Creating over an existing session fails with
	// ErrSessionExists and changes nothing.
	//
	// A restored record (rec.Expires set) never outlives a revocation: for
	// a user's session, Create fails with ErrNotFound if Revoke ended a live
	// session of that user with public ID rec.ID (any time before that
	// session would have expired), or if rec.Horizon is set and RevokeAll
	// ended the user's sessions after rec.Horizon by the store's clock.
	Create(ctx context.Context, k Key, rec Record, p Policy) (Record, error)

	// Load returns the session and slides its idle expiry. If its last-seen
	// time is p.TouchInterval old or more, it is set to now and the client's
	// user agent and IP are recorded. A store may slide the expiry only
	// then, so that a read writes nothing in between (RedisStore does): the
	// session may then end up to p.TouchInterval early, never late.
	Load(ctx context.Context, k Key, c Client, p Policy) (Record, error)

	// Update applies c to the session's values (only the named fields),
	// atomically, and may slide its idle expiry as Load does. ErrNotFound if
	// it no longer exists, and then nothing of c remains stored.
	Update(ctx context.Context, k Key, c Change, p Policy) error

	// Incr adds delta to the integer value named name, atomically, and
	// returns the result, stored in decimal. An absent value counts as 0.
	// A present value is an integer only as Redis's HINCRBY reads one:
	// "0", or an optional '-' then a digit 1-9 and more digits, within the
	// int64 range. So "", "+5", "05", "-0" and " 5" are not integers, even
	// where strconv.ParseInt would take them. ErrNotInteger if the value is
	// not an integer or the sum leaves the int64 range; the value is then
	// left as it was.
	Incr(ctx context.Context, k Key, name string, delta int64, p Policy) (int64, error)

	// Rotate moves a session to a new token (and for Login to a new user):
	// r.From stops existing and r.To holds the values r.From holds when
	// Rotate takes it over (so a write another request made after this one
	// loaded r.From is kept), with r.Change applied on top field by field.
	// Returns the new record.
	//
	// A rotation never loses the session: when Rotate fails, r.From is as
	// it was and r.To absent, or r.To is complete; never neither. All that
	// can refuse it (r.To exists, the store is out of memory or cannot be
	// reached) must refuse before r.From is touched.
	//
	// Rotation and revocation: when r.From and r.To belong to the same user
	// (a renewal of a user's session, or a new login of the same user), the
	// rotation is atomic with that user's Revoke and RevokeAll. The session
	// is live under exactly one of its tokens at every moment (so Revoke by
	// the public ID a renewal keeps finds it under one or the other); a
	// revocation that runs first makes a renewal fail with ErrNotFound and
	// create nothing; one that runs after ends r.To. Hence once a renewal
	// and a revocation of its user have both returned, whatever their
	// order, the session is not live under either token. (Delete names a
	// token, not a session: a Delete of r.From that runs after the rotation
	// finds nothing, and r.To stays.) Otherwise (a login from an anonymous session or from another
	// user's, a renewal of an anonymous session) a store may take two
	// steps, but then it creates r.To first and ends r.From second; r.To is
	// a session of its user like any other from the moment it is created,
	// so a RevokeAll of that user that the store runs after the create ends
	// it, even before Rotate returns. One that ran before the create does
	// not: a login is a new authentication. A renewal whose r.From ends
	// before the second step (a logout racing it) fails with ErrNotFound and
	// leaves no r.To. If the second step's outcome is unknown (a connection
	// lost between the steps), a store may report success only where the
	// old token grants nothing: a login from an anonymous session, whose
	// old token then still opens an anonymous session with the values it
	// had, until its idle timeout. A renewal, whose point is that the old
	// token stops working, then fails.
	Rotate(ctx context.Context, r Rotation, p Policy) (Record, error)

	// Delete removes the session. Deleting a missing session is not an error.
	Delete(ctx context.Context, k Key) error

	// List returns the live sessions of userID, in no particular order,
	// at a cost in proportion to that user's sessions, never to the store's.
	List(ctx context.Context, userID string) ([]Info, error)

	// Revoke deletes the session of userID whose public ID is id.
	// ErrNotFound if that user has no such live session.
	Revoke(ctx context.Context, userID, id string) error

	// RevokeAll ends every session of userID except keep (the zero Key keeps
	// none), including sessions missing from the user's index, and returns
	// how many it found and deleted.
	RevokeAll(ctx context.Context, userID string, keep Key) (int, error)
}

// Key names one stored session: its user ("" while anonymous) and the
// base64url SHA-256 of its token. The zero Key names no session (IsZero).
type Key struct {
	UserID string
	Hash   string
}

// IsZero reports whether k names no session.
func (k Key) IsZero() bool { return k.Hash == "" }

// Info describes one session of a user, for a devices page. Stores fill it;
// a zero field is one the store does not know.
type Info struct {
	ID        string    // public handle, assigned at creation or login; never the token
	Created   time.Time // creation or login
	LastSeen  time.Time // last use, as precise as Options.TouchInterval
	Expires   time.Time // absolute end; idle expiry may come sooner
	UserAgent string
	IP        string
	// Remembered: logged in with LoginOptions.Remember, so the session
	// has the longer remembered lifetime and its cookie outlives the browser.
	Remembered bool
}

// Record is everything a Store keeps for one session. Store.Create says
// which of its fields a new session takes and which the store sets; nil
// Values means none.
type Record struct {
	Info
	UserID string
	Values map[string]string
	// Horizon is plumbing for restoring sessions after an outage
	// (FallbackStore sets it); zero everywhere else, and never stored. On
	// Create of a restored record, it is the time, by the store's clock, up
	// to which whoever restores it saw the store: a RevokeAll of the user
	// after it ends the restored session too (see Store.Create).
	Horizon time.Time
}

// Change is a set of per-field writes: only these fields are touched, so
// concurrent requests that change different fields lose nothing. The zero
// Change changes nothing (IsEmpty).
type Change struct {
	Set    map[string]string
	Delete []string
}

// IsEmpty reports whether c changes nothing.
func (c Change) IsEmpty() bool { return len(c.Set) == 0 && len(c.Delete) == 0 }

// apply returns values with c applied, leaving values untouched.
func (c Change) apply(values map[string]string) map[string]string {
	out := make(map[string]string, len(values)+len(c.Set))
	for k, v := range values {
		out[k] = v
	}
	for _, k := range c.Delete {
		delete(out, k)
	}
	for k, v := range c.Set {
		out[k] = v
	}
	return out
}

// Rotation describes a token rotation for Store.Rotate. Its zero value is
// not a rotation: To is required.
type Rotation struct {
	// From is the session being replaced; zero if it was never stored.
	From Key
	// To names the new session; its hash comes from a fresh token.
	To Key
	// Record holds the new session's ID, client, and the values read
	// when the request loaded From (used if From is gone and !Renew).
	Record Record
	// Change is what the request changed on top of those values.
	Change Change
	// Renew keeps From's Created and Expires and its ID, and requires From to
	// still exist (ErrNotFound otherwise), so a revoked session cannot escape
	// through a renewal. Without it (Login) the new session starts a new
	// lifetime and is created even if From has meanwhile expired.
	Renew bool
}

// Client is what a request tells the store about the device using a session.
// The zero Client is an unknown device: empty user agent and IP.
type Client struct {
	UserAgent string
	IP        string
	// Remembered: logged in with LoginOptions.Remember, so the session
	// has the longer remembered lifetime and its cookie outlives the browser.
	Remembered bool
}

// Policy carries the Manager's timing options into each store call. Stores
// apply no defaults: the Manager fills every duration from Options, and a
// zero MaxSessionsPerUser means no cap.
type Policy struct {
	IdleTimeout        time.Duration
	Lifetime           time.Duration
	TouchInterval      time.Duration
	MaxSessionsPerUser int
}
