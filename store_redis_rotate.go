package session

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/redis/go-redis/v9"
)

// errRotationIncomplete: a rotation across slots created the new session
// but could not confirm the old one is gone.
var errRotationIncomplete = errors.New("session: redis rotate: incomplete")

// errRotationUnmade: the takeover of a pipelined rotation found no new
// session (its create was refused, or a revocation ended it at once), so it
// left the old one alone.
var errRotationUnmade = fmt.Errorf("%w: the rotation's new session does not exist", ErrNotFound)

// Rotate implements Store.
//
// A rotation between two sessions of one user (a renewal of a user's
// session, or a new login of the same user) is one script: the user's keys
// share a cluster slot. It checks the old session is live, and in one step
// deletes it and creates the new one from its values as they are then, with
// r.Change on top. So it is atomic with every other call on the user's
// sessions: a Revoke or RevokeAll runs wholly before it (and a renewal then
// fails with ErrNotFound) or wholly after it (and ends the new session). It
// costs one round trip (script and WAIT in one pipeline with WaitReplicas).
// If the old session is gone and this is a login, the new one is created
// from r.Record's values instead, in a second round trip.
//
// Any other rotation (a login from an anonymous session or from another
// user's, a renewal of an anonymous session) has its two keys in different
// slots, and takes two steps, in this order:
//
//  1. Create the new session. If that fails (Redis out of memory, a
//     timeout, anything), Rotate returns the error and the old session is
//     untouched. A user's session is created atomically with that user's
//     generation: a RevokeAll of the user that Redis runs after this step,
//     even before Rotate returns, ends the new session; one that Redis ran
//     before it does not, as the login is a new authentication.
//  2. Take the old session over: read its values and delete it. If it has
//     changed since the request loaded it, one Update (a third round trip,
//     rare) brings the changes over. If it is gone and this is a renewal,
//     the new session is deleted again and Rotate returns ErrNotFound: a
//     renewal cannot outlive a logout of the session it renews.
//
// If step 2 fails (a lost connection, a timeout: Redis may or may not have
// run it), the new session exists and the old one may still exist. For a
// login from an anonymous session Rotate then returns the new session with
// no error: the old token gives no identity, only the values it held
// before the login, and it ends on its idle timeout. For a renewal, whose
// purpose is that the old token stops working, and for a login from a
// user's session, it returns an error (wrapping the cause) that says so;
// the new session, which no one holds the token of, is left to expire on
// its idle timeout, since deleting it could leave neither session if the
// takeover did happen.
func (s *RedisStore) Rotate(ctx context.Context, r Rotation, p Policy) (Record, error) {
	if p.MaxSessionsPerUser > 0 && r.To.UserID != "" {
		defer s.cache.wrote(r.From, r.To, Key{UserID: r.To.UserID})
	} else {
		defer s.cache.wrote(r.From, r.To)
	}
	if r.From.IsZero() {
		if r.Renew {
			return Record{}, ErrNotFound
		}
		return s.rotateCreate(ctx, r, p)
	}
	if r.From.UserID != "" && r.From.UserID == r.To.UserID {
		return s.rotateInPlace(ctx, r, p)
	}
	return s.rotateAcross(ctx, r, p)
}

// rotateCreate creates r.To from r.Record's values with r.Change on top:
// the first step of a rotation across slots, and all of one from an
// unstored or vanished session.
func (s *RedisStore) rotateCreate(ctx context.Context, r Rotation, p Policy) (Record, error) {
	values := r.Change.apply(r.Record.Values)
	keys, args, err := s.createCall(r.To, r.Record, values, p, r.Renew)
	if err != nil {
		return Record{}, err
	}
	res, err := s.runDurable(ctx, scriptCreate, keys, args...)
	if err != nil {
		return Record{}, fmt.Errorf("session: redis rotate: %w", err)
	}
	return created(r.To, r.Record, values, res)
}

// rotateInPlace rotates between two sessions of one user in one script.
func (s *RedisStore) rotateInPlace(ctx context.Context, r Rotation, p Policy) (Record, error) {
	fromKeys, err := s.keys(r.From)
	if err != nil {
		return Record{}, err
	}
	toKeys, err := s.keys(r.To)
	if err != nil {
		return Record{}, err
	}
	renew := "0"
	if r.Renew {
		renew = "1"
	}
	args := make([]any, 0, 12+2*len(r.Change.Set)+len(r.Change.Delete))
	args = append(args, r.From.Hash, r.From.UserID, millis(p.IdleTimeout), millis(p.Lifetime), renew,
		p.MaxSessionsPerUser, s.userPrefix(r.From.UserID), r.To.Hash,
		r.Record.ID, r.Record.UserAgent, r.Record.IP, len(r.Change.Set))
	remembered := rememberedFields(r.Record, p) // a login's; a renewal keeps the old session's
	if r.Renew {
		remembered = nil
	}
	args[len(args)-1] = len(r.Change.Set) + len(remembered)/2
	args = append(args, remembered...)
	for name, v := range r.Change.Set {
		args = append(args, valuePrefix+name, v)
	}
	for _, name := range r.Change.Delete {
		args = append(args, valuePrefix+name)
	}
	res, err := s.runDurable(ctx, scriptRotate, append(fromKeys, toKeys[0]), args...)
	if err != nil {
		return Record{}, fmt.Errorf("session: redis rotate: %w", err)
	}
	if code, ok := res.(int64); ok && code <= 0 && !r.Renew {
		// The old session ended since the request loaded it: a login
		// starts a new session anyway, from the values the request saw.
		return s.rotateCreate(ctx, r, p)
	}
	return parseHash(r.To, res)
}

// rotateAcross rotates between keys in different slots: create the new
// session first, then take the old one over (see Rotate).
func (s *RedisStore) rotateAcross(ctx context.Context, r Rotation, p Policy) (Record, error) {
	fromKeys, err := s.keys(r.From)
	if err != nil {
		return Record{}, err
	}
	out, res, err := s.createThenTakeOver(ctx, r, p, fromKeys)
	if errors.Is(err, errTakeover) {
		if r.From.UserID == "" && !r.Renew {
			return out, nil
		}
		return Record{}, fmt.Errorf("%w: the new session exists; the old one may still exist: %w", errRotationIncomplete, err)
	}
	if err != nil {
		return Record{}, err
	}
	old, err := parseHash(r.From, res)
	if errors.Is(err, errRotationUnmade) {
		return Record{}, err
	}
	switch {
	case err != nil && r.Renew:
		if delErr := s.Delete(ctx, r.To); delErr != nil {
			return Record{}, fmt.Errorf("session: redis rotate: undoing the renewal of an ended session: %w", delErr)
		}
		return Record{}, err
	case err != nil || maps.Equal(old.Values, r.Record.Values):
		return out, nil
	}
	// Another request changed the old session after this one loaded it:
	// write the difference between what was created and what it should be.
	want := r.Change.apply(old.Values)
	fix := Change{Set: map[string]string{}}
	for name, v := range want {
		if cur, ok := out.Values[name]; !ok || cur != v {
			fix.Set[name] = v
		}
	}
	for name := range out.Values {
		if _, ok := want[name]; !ok {
			fix.Delete = append(fix.Delete, name)
		}
	}
	if err := s.Update(ctx, r.To, fix, p); err != nil {
		// ErrNotFound: a revocation ended the new session since step 1.
		// Otherwise the new session is whole but for that change.
		return Record{}, fmt.Errorf("session: redis rotate: carrying over a concurrent change: %w", err)
	}
	out.Values = want
	return out, nil
}

// errTakeover wraps a failure of a rotation's takeover step, after its
// create step succeeded.
var errTakeover = errors.New("session: redis rotate: taking over the old session")

// createThenTakeOver runs the two steps of a rotation across slots: create
// r.To, then take r.From over (the takeover's reply is returned for the
// caller to read). A failed create is returned as it is, with the old
// session untouched; a failed takeover wraps errTakeover.
//
// With one primary for every key (a single node, or Sentinel) both steps
// go in one pipeline, one round trip: the takeover is told the new key and
// leaves the old session alone unless the create made it, so a refused
// create costs nothing more than in two round trips. On Cluster the keys
// live on different primaries, which cannot check each other: two round
// trips, the second only after the first succeeded.
func (s *RedisStore) createThenTakeOver(ctx context.Context, r Rotation, p Policy, fromKeys []string) (Record, any, error) {
	values := r.Change.apply(r.Record.Values)
	keys, args, err := s.createCall(r.To, r.Record, values, p, r.Renew)
	if err != nil {
		return Record{}, nil, err
	}
	if s.cluster == nil {
		pipe := s.c.Pipeline()
		createCmd := scriptCreate.EvalSha(ctx, pipe, keys, args...)
		takeoverArgs := []any{r.From.Hash, r.From.UserID, keys[0], r.Record.ID}
		takeoverCmd := scriptTakeover.EvalSha(ctx, pipe, fromKeys, takeoverArgs...)
		if s.waitReplicas > 0 {
			pipe.Do(ctx, "WAIT", s.waitReplicas, s.waitTimeout.Milliseconds())
		}
		_, _ = pipe.Exec(ctx) // each command's own error is checked here
		res, err := createCmd.Result()
		if !redis.HasErrorPrefix(err, "NOSCRIPT") {
			if err != nil {
				return Record{}, nil, fmt.Errorf("session: redis rotate: %w", refusal(err))
			}
			out, err := created(r.To, r.Record, values, res)
			if err != nil {
				return Record{}, nil, err
			}
			old, err := takeoverCmd.Result()
			if redis.HasErrorPrefix(err, "NOSCRIPT") {
				old, err = s.runDurable(ctx, scriptTakeover, fromKeys, takeoverArgs...)
			}
			if err != nil {
				return out, nil, fmt.Errorf("%w: %w", errTakeover, refusal(err))
			}
			return out, old, nil
		}
		// The node had not cached the create script, so nothing was made
		// and the takeover left the old session alone: go step by step.
	}
	res, err := s.runDurable(ctx, scriptCreate, keys, args...)
	if err != nil {
		return Record{}, nil, fmt.Errorf("session: redis rotate: %w", err)
	}
	out, err := created(r.To, r.Record, values, res)
	if err != nil {
		return Record{}, nil, err
	}
	old, err := s.runDurable(ctx, scriptTakeover, fromKeys, r.From.Hash, r.From.UserID)
	if err != nil {
		return out, nil, fmt.Errorf("%w: %w", errTakeover, err)
	}
	return out, old, nil
}
