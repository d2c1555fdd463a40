package session

import (
	"context"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configures NewRedisStore. The zero value means the defaults.
type RedisOptions struct {
	// Prefix starts every key the store writes. Default "session:". It may
	// not contain '{' or '}': the hash tag that keeps a user's keys in one
	// cluster slot must be the store's own.
	Prefix string
	// WaitReplicas, if above 0, makes logins, logouts and revocations wait
	// (Redis WAIT, on the same connection as the write) until that many
	// replicas have the write, or WaitTimeout has passed, so that a failover
	// right after them is less likely to undo them. Replication is
	// asynchronous otherwise. Default 0: no waiting. If fewer replicas
	// answer in time, the operation still succeeds.
	WaitReplicas int
	// WaitTimeout bounds the wait for WaitReplicas. Default 100ms; keep it
	// well under the client's ReadTimeout.
	WaitTimeout time.Duration
	// LocalCache turns on a local read cache kept current by Redis's
	// server-assisted invalidation (see LocalCacheOptions). Default: off.
	// A store with the cache must be closed (Close).
	LocalCache LocalCacheOptions
}

// DefaultWaitTimeout is RedisOptions.WaitTimeout's default.
const DefaultWaitTimeout = 100 * time.Millisecond

// RedisStore keeps sessions in Redis, one hash per session, on a single
// node, Sentinel or Cluster (any redis.UniversalClient). It is safe for
// concurrent use and keeps no state of its own, but for the optional
// local cache (RedisOptions.LocalCache).
//
// Layout, with P the prefix and T a hash tag:
//
//	P{T}:<hash>  the session: user values under "v:<name>", metadata under "@..."
//	P{T}:idx     a user's index: sorted set of session hashes scored by absolute end
//	P{T}:gen     a user's generation: a session is live only while its "@gen" matches
//
// T is "u" + base64url(user ID) for a user's keys, so all of them share one
// cluster slot and no user ID can reach into another's names; an anonymous
// session's T is "a" + the start of its hash, spreading them over slots.
// Every step that runs more than one command is one Lua script, so it is
// atomic and costs one round trip.
//
// Session reads go to primaries, as they must (a replica may not have seen a
// logout yet): the store sends only EVAL and EVALSHA, which Redis does not
// flag read-only, so a cluster client routes them to the slot's primary
// even with ReadOnly, RouteRandomly or RouteByLatency set. A client that
// talks to a replica only (FailoverOptions.ReplicaOnly with
// NewFailoverClient, or a plain client on a replica's address) fails every
// write and every read of a live session with a READONLY error.
//
// On a cluster client, a failure that is not a Redis reply (a refused
// connection to a primary that just died, a timeout) makes the client
// reload its slot map at once rather than after ClusterStateReloadInterval.
// The zero value is not usable: use NewRedisStore.
type RedisStore struct {
	c            redis.UniversalClient
	cluster      *redis.ClusterClient // c, when it is one
	prefix       string
	waitReplicas int
	waitTimeout  time.Duration
	cache        *redisCache // nil unless RedisOptions.LocalCache is on
}

// NewRedisStore returns a store on c. It does no I/O, so it neither blocks
// nor fails when Redis is down. It refuses a nil client and invalid options
// (a Prefix with a brace, a negative WaitReplicas, WaitTimeout or
// LocalCache.Size, a LocalCache on a client other than *redis.Client) with
// ErrInvalidOptions, so nothing fails later for a reason known now. With
// the local cache on, it starts the cache's invalidation connections in the
// background; Close stops them.
func NewRedisStore(c redis.UniversalClient, opts RedisOptions) (*RedisStore, error) {
	switch {
	case c == nil:
		return nil, fmt.Errorf("%w: NewRedisStore needs a client", ErrInvalidOptions)
	case strings.ContainsAny(opts.Prefix, "{}"):
		return nil, fmt.Errorf("%w: RedisOptions.Prefix %q contains a brace, which would take over the cluster hash tag", ErrInvalidOptions, opts.Prefix)
	case opts.WaitReplicas < 0:
		return nil, fmt.Errorf("%w: RedisOptions.WaitReplicas is negative", ErrInvalidOptions)
	case opts.WaitTimeout < 0 || (opts.WaitTimeout > 0 && opts.WaitTimeout < time.Millisecond):
		return nil, fmt.Errorf("%w: RedisOptions.WaitTimeout is %v, need 0 (default) or at least 1ms", ErrInvalidOptions, opts.WaitTimeout)
	case opts.LocalCache.Size < 0:
		return nil, fmt.Errorf("%w: RedisOptions.LocalCache.Size is negative", ErrInvalidOptions)
	}
	single, isSingle := c.(*redis.Client)
	if opts.LocalCache.Size > 0 && !isSingle {
		return nil, errCacheNeedsClient(c)
	}
	s := &RedisStore{c: c, prefix: opts.Prefix, waitReplicas: opts.WaitReplicas, waitTimeout: opts.WaitTimeout}
	s.cluster, _ = c.(*redis.ClusterClient)
	if s.prefix == "" {
		s.prefix = "session:"
	}
	if s.waitTimeout == 0 {
		s.waitTimeout = DefaultWaitTimeout
	}
	if opts.LocalCache.Size > 0 {
		s.cache = newRedisCache(s, single, opts.LocalCache.Size)
	}
	return s, nil
}

// Close stops the local cache's connections, if the store has a cache; it
// does not close the client. Without a cache it does nothing.
func (s *RedisStore) Close() error { return s.cache.Close() }

// runSession runs a script that writes only the session k's own hash,
// through the local cache when there is one, which then keeps what next
// makes of the reply (see redisCache.runSession).
func (s *RedisStore) runSession(ctx context.Context, k Key, p Policy, script *redis.Script, next cacheNext, keys []string, args ...any) *redis.Cmd {
	if s.cache == nil {
		return s.run(ctx, script, keys, args...)
	}
	return s.cache.runSession(ctx, k, p, script, next, keys, args...)
}

// run runs script by EVALSHA, falling back to EVAL on NOSCRIPT. go-redis's
// Script.Run routes both by the first key, so the EVAL goes to the very
// node that lacked the script: the fallback works per node, and on a
// primary promoted from a replica that never saw the script.
func (s *RedisStore) run(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	cmd := script.Run(ctx, s.c, keys, args...)
	s.noteFailure(cmd.Err())
	if err := cmd.Err(); err != nil {
		cmd.SetErr(refusal(err))
	}
	return cmd
}

// noteFailure makes a cluster client reload its slot map after a failure
// that may mean a primary is gone: go-redis otherwise keeps sending that
// slot's commands to the dead primary until its ClusterStateReloadInterval
// (60s by default) runs out, long after a replica took over
// (redis/go-redis#3979). The reload is asynchronous and coalesced.
func (s *RedisStore) noteFailure(err error) {
	if err == nil || s.cluster == nil {
		return
	}
	var reply redis.Error
	if errors.As(err, &reply) && !redis.HasErrorPrefix(err, "CLUSTERDOWN") && !redis.HasErrorPrefix(err, "TRYAGAIN") {
		return // Redis answered: the node is alive and serves the slot
	}
	s.cluster.ReloadState(context.Background())
}

// runDurable runs script like run; with WaitReplicas set, it then waits
// until that many replicas have the write. WAIT counts only the writes of
// its own connection, so the script and the WAIT go in one pipeline to the
// primary of the first key.
func (s *RedisStore) runDurable(ctx context.Context, script *redis.Script, keys []string, args ...any) (any, error) {
	if s.waitReplicas == 0 {
		return s.run(ctx, script, keys, args...).Result()
	}
	var node interface{ Pipeline() redis.Pipeliner } = s.c
	if s.cluster != nil {
		n, err := s.cluster.MasterForKey(ctx, keys[0])
		if err != nil {
			s.noteFailure(err)
			return nil, refusal(err)
		}
		node = n
	}
	res, err := evalAndWait(ctx, node, script.EvalSha, keys, args, s.waitReplicas, s.waitTimeout)
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		res, err = evalAndWait(ctx, node, script.Eval, keys, args, s.waitReplicas, s.waitTimeout)
	}
	if s.cluster != nil && (redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK")) {
		// The slot moved since the client's map was made: reload it, and
		// let the client follow the redirect (without the wait).
		s.cluster.ReloadState(context.Background())
		return s.run(ctx, script, keys, args...).Result()
	}
	s.noteFailure(err)
	return res, refusal(err)
}

// evalAndWait sends eval and WAIT in one pipeline. Too few replicas within
// the timeout is not an error: the write is on the primary.
func evalAndWait(ctx context.Context, node interface{ Pipeline() redis.Pipeliner },
	eval func(context.Context, redis.Scripter, []string, ...any) *redis.Cmd,
	keys []string, args []any, replicas int, timeout time.Duration) (any, error) {
	pipe := node.Pipeline()
	cmd := eval(ctx, pipe, keys, args...)
	pipe.Do(ctx, "WAIT", replicas, timeout.Milliseconds())
	_, _ = pipe.Exec(ctx) // the script's own error is checked here
	return cmd.Result()
}

//go:embed lua/*.lua
var luaFiles embed.FS

func loadScript(name string) *redis.Script {
	prelude, err := luaFiles.ReadFile("lua/prelude.lua")
	if err != nil {
		panic(err) // embedded at build time: cannot happen at run time
	}
	body, err := luaFiles.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(err)
	}
	return redis.NewScript(string(prelude) + "\n" + string(body))
}

var (
	scriptLoad      = loadScript("load")
	scriptUpdate    = loadScript("update")
	scriptIncr      = loadScript("incr")
	scriptCreate    = loadScript("create")
	scriptTakeover  = loadScript("takeover")
	scriptRotate    = loadScript("rotate")
	scriptDelete    = loadScript("delete")
	scriptList      = loadScript("list")
	scriptRevoke    = loadScript("revoke")
	scriptRevokeAll = loadScript("revokeall")
)

// Field names: user values live under valuePrefix, metadata under '@', so
// no user key can collide with metadata.
const (
	valuePrefix = "v:"
	fieldID     = "@id"
	fieldUser   = "@u"
	fieldCreate = "@c"
	fieldSeen   = "@s"
	fieldExpire = "@x"
	fieldAgent  = "@ua"
	fieldIP     = "@ip"
	// A remembered session ("remember me") is marked, and keeps the idle
	// timeout it was created with, which every script slides it by.
	fieldRemembered = "@r"
	fieldIdle       = "@i"
)

// errRotationIncomplete: a rotation across slots created the new session
// but could not confirm the old one is gone.
var errRotationIncomplete = errors.New("session: redis rotate: incomplete")

// errRotationUnmade: the takeover of a pipelined rotation found no new
// session (its create was refused, or a revocation ended it at once), so it
// left the old one alone.
var errRotationUnmade = fmt.Errorf("%w: the rotation's new session does not exist", ErrNotFound)

// Why a script found no live session; each wraps ErrNotFound.
var (
	errExpired      = fmt.Errorf("%w: expired", ErrNotFound)
	errRevoked      = fmt.Errorf("%w: revoked", ErrNotFound)
	errUserMismatch = fmt.Errorf("%w: stored user differs from the cookie's", ErrInconsistent)
	errCorrupt      = fmt.Errorf("%w: stored session is corrupt", ErrInconsistent)
)

func codeErr(code int64) error {
	switch code {
	case -1:
		return errExpired
	case -2:
		return errRevoked
	case -3:
		return errUserMismatch
	case -4:
		return errCorrupt
	case -5:
		return ErrSessionExists
	case -6:
		return errRotationUnmade
	}
	return ErrNotFound
}

// userTag is a user's hash tag: injective, and free of '{', '}', '*', ':'.
func userTag(userID string) string {
	return "u" + base64.RawURLEncoding.EncodeToString([]byte(userID))
}

// userPrefix is what every key of userID starts with.
func (s *RedisStore) userPrefix(userID string) string {
	return s.prefix + "{" + userTag(userID) + "}:"
}

// keys returns the script KEYS for a session: the hash alone while
// anonymous; hash, generation and index for a user's session.
func (s *RedisStore) keys(k Key) ([]string, error) {
	if !validHash(k.Hash) {
		return nil, ErrNotFound
	}
	if k.UserID == "" {
		return []string{s.prefix + "{a" + k.Hash[:8] + "}:" + k.Hash}, nil
	}
	if err := ValidateUserID(k.UserID); err != nil {
		return nil, err
	}
	p := s.userPrefix(k.UserID)
	return []string{p + k.Hash, p + "gen", p + "idx"}, nil
}

// userKeys returns KEYS for the per-user scripts: generation, index.
func (s *RedisStore) userKeys(userID string) (prefix string, keys []string, err error) {
	if err := ValidateUserID(userID); err != nil {
		return "", nil, err
	}
	p := s.userPrefix(userID)
	return p, []string{p + "gen", p + "idx"}, nil
}

func millis(d time.Duration) int64 { return max(1, d.Milliseconds()) }

// Create implements Store.
func (s *RedisStore) Create(ctx context.Context, k Key, rec Record, p Policy) (Record, error) {
	if p.MaxSessionsPerUser > 0 && k.UserID != "" {
		defer s.cache.wrote(Key{UserID: k.UserID}) // the cap may have revoked others
	}
	restored := !rec.Expires.IsZero()
	keys, args, err := s.createCall(k, rec, rec.Values, p, restored)
	if err != nil {
		return Record{}, err
	}
	if restored {
		args[restoreArg] = restoreHorizon(rec.Horizon)
	}
	res, err := s.runDurable(ctx, scriptCreate, keys, args...)
	if err != nil {
		return Record{}, fmt.Errorf("session: redis create: %w", err)
	}
	rec.Horizon = time.Time{}
	return created(k, rec, rec.Values, res)
}

// createCall builds the create script's KEYS and ARGV. keep keeps rec's
// Created and Expires (a renewal) instead of starting a new lifetime.
func (s *RedisStore) createCall(k Key, rec Record, values map[string]string, p Policy, keep bool) ([]string, []any, error) {
	keys, err := s.keys(k)
	if err != nil {
		return nil, nil, err
	}
	createdAt, expiresAt := "", ""
	if keep {
		createdAt = strconv.FormatInt(rec.Created.UnixMilli(), 10)
		expiresAt = strconv.FormatInt(rec.Expires.UnixMilli(), 10)
	}
	userPrefix := ""
	if k.UserID != "" {
		userPrefix = s.userPrefix(k.UserID)
	}
	args := make([]any, 0, 15+2*len(values))
	args = append(args, k.Hash, k.UserID, millis(p.IdleTimeout), millis(p.Lifetime), createdAt, expiresAt,
		p.MaxSessionsPerUser, userPrefix, "",
		fieldID, rec.ID, fieldAgent, rec.UserAgent, fieldIP, rec.IP)
	args = append(args, rememberedFields(rec, p)...)
	for name, v := range values {
		args = append(args, valuePrefix+name, v)
	}
	return keys, args, nil
}

// rememberedFields are the metadata field/value pairs of a remembered
// session: its mark and its own idle timeout, the Policy's at its login.
func rememberedFields(rec Record, p Policy) []any {
	if !rec.Remembered {
		return nil
	}
	return []any{fieldRemembered, "1", fieldIdle, millis(p.IdleTimeout)}
}

// created reads the create script's reply into the stored record.
func created(k Key, rec Record, values map[string]string, res any) (Record, error) {
	if code, ok := res.(int64); ok {
		return Record{}, codeErr(code)
	}
	times, ok := res.([]any)
	if !ok || len(times) != 3 {
		return Record{}, fmt.Errorf("session: redis create: unexpected reply %T", res)
	}
	var ms [3]int64
	for i, t := range times {
		s, _ := t.(string)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return Record{}, fmt.Errorf("session: redis create: unexpected reply %q", s)
		}
		ms[i] = n
	}
	rec.UserID = k.UserID
	rec.Values = maps.Clone(values)
	if rec.Values == nil {
		rec.Values = map[string]string{}
	}
	rec.Created, rec.LastSeen, rec.Expires = time.UnixMilli(ms[0]), time.UnixMilli(ms[1]), time.UnixMilli(ms[2])
	return rec, nil
}

// Load implements Store.
func (s *RedisStore) Load(ctx context.Context, k Key, c Client, p Policy) (Record, error) {
	keys, err := s.keys(k)
	if err != nil {
		return Record{}, err
	}
	if s.cache != nil {
		if rec, ok := s.cache.get(k, time.Now()); ok {
			return rec, nil
		}
	}
	res, err := s.runSession(ctx, k, p, scriptLoad, loadedNext(k), keys, k.Hash, k.UserID,
		millis(p.IdleTimeout), p.TouchInterval.Milliseconds(), c.UserAgent, c.IP).Result()
	if err != nil {
		return Record{}, fmt.Errorf("session: redis load: %w", err)
	}
	return parseHash(k, res)
}

// parseHash turns a script's field/value list into a Record. Anything
// malformed is ErrNotFound: a corrupt hash is no session, never a panic.
func parseHash(k Key, res any) (Record, error) {
	if code, ok := res.(int64); ok {
		return Record{}, codeErr(code)
	}
	list, ok := res.([]any)
	if !ok || len(list)%2 != 0 {
		return Record{}, errCorrupt
	}
	rec := Record{UserID: k.UserID, Values: make(map[string]string, len(list)/2)}
	var haveCreated, haveSeen, haveExpires bool
	for i := 0; i < len(list); i += 2 {
		name, ok1 := list[i].(string)
		value, ok2 := list[i+1].(string)
		if !ok1 || !ok2 {
			return Record{}, errCorrupt
		}
		if v, ok := strings.CutPrefix(name, valuePrefix); ok {
			rec.Values[v] = value
			continue
		}
		switch name {
		case fieldID:
			rec.ID = value
		case fieldUser:
			if value != k.UserID {
				return Record{}, errUserMismatch
			}
		case fieldCreate:
			rec.Created, haveCreated = parseMillis(value)
		case fieldSeen:
			rec.LastSeen, haveSeen = parseMillis(value)
		case fieldExpire:
			rec.Expires, haveExpires = parseMillis(value)
		case fieldAgent:
			rec.UserAgent = value
		case fieldIP:
			rec.IP = value
		case fieldRemembered:
			rec.Remembered = value == "1"
		}
	}
	if rec.ID == "" || !haveCreated || !haveSeen || !haveExpires {
		return Record{}, errCorrupt
	}
	return rec, nil
}

func parseMillis(s string) (time.Time, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(n), true
}

// Update implements Store.
func (s *RedisStore) Update(ctx context.Context, k Key, c Change, p Policy) error {
	keys, err := s.keys(k)
	if err != nil {
		return err
	}
	args := make([]any, 0, 4+2*len(c.Set)+len(c.Delete))
	args = append(args, k.Hash, k.UserID, millis(p.IdleTimeout), len(c.Set))
	for name, v := range c.Set {
		args = append(args, valuePrefix+name, v)
	}
	for _, name := range c.Delete {
		args = append(args, valuePrefix+name)
	}
	res, err := s.runSession(ctx, k, p, scriptUpdate, changedNext(c), keys, args...).Int64()
	if err != nil {
		return fmt.Errorf("session: redis update: %w", err)
	}
	if res != 1 {
		return codeErr(res)
	}
	return nil
}

// Incr implements Store.
func (s *RedisStore) Incr(ctx context.Context, k Key, name string, delta int64, p Policy) (int64, error) {
	keys, err := s.keys(k)
	if err != nil {
		return 0, err
	}
	res, err := s.runSession(ctx, k, p, scriptIncr, incrNext(name), keys, k.Hash, k.UserID, millis(p.IdleTimeout), valuePrefix+name, delta).Result()
	if err != nil {
		if msg := err.Error(); strings.Contains(msg, "not an integer") || strings.Contains(msg, "overflow") {
			return 0, ErrNotInteger
		}
		return 0, fmt.Errorf("session: redis incr: %w", err)
	}
	if code, ok := res.(int64); ok {
		return 0, codeErr(code)
	}
	if list, ok := res.([]any); ok && len(list) == 1 {
		if v, ok := list[0].(string); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return n, nil
			}
		}
	}
	return 0, fmt.Errorf("session: redis incr: unexpected reply %v", res)
}

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

// Delete implements Store.
func (s *RedisStore) Delete(ctx context.Context, k Key) error {
	defer s.cache.wrote(k)
	keys, err := s.keys(k)
	if err != nil {
		return nil // no such key can exist
	}
	if _, err := s.runDurable(ctx, scriptDelete, keys, k.Hash, k.UserID); err != nil {
		return fmt.Errorf("session: redis delete: %w", err)
	}
	return nil
}

// List implements Store.
func (s *RedisStore) List(ctx context.Context, userID string) ([]Info, error) {
	prefix, keys, err := s.userKeys(userID)
	if err != nil {
		return nil, err
	}
	res, err := s.run(ctx, scriptList, keys, prefix).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("session: redis list: %w", err)
	}
	if len(res)%7 != 0 {
		return nil, fmt.Errorf("session: redis list: unexpected reply of %d values", len(res))
	}
	out := make([]Info, 0, len(res)/7)
	for i := 0; i < len(res); i += 7 {
		created, _ := parseMillis(res[i+1])
		seen, _ := parseMillis(res[i+2])
		expires, _ := parseMillis(res[i+3])
		out = append(out, Info{ID: res[i], Created: created, LastSeen: seen, Expires: expires, UserAgent: res[i+4], IP: res[i+5], Remembered: res[i+6] == "1"})
	}
	return out, nil
}

// Revoke implements Store.
func (s *RedisStore) Revoke(ctx context.Context, userID, id string) error {
	defer s.cache.wrote(Key{UserID: userID})
	prefix, keys, err := s.userKeys(userID)
	if err != nil {
		return err
	}
	res, err := s.runDurable(ctx, scriptRevoke, keys, prefix, id)
	n, _ := res.(int64)
	if err != nil {
		return fmt.Errorf("session: redis revoke: %w", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// RevokeAll implements Store.
func (s *RedisStore) RevokeAll(ctx context.Context, userID string, keep Key) (int, error) {
	defer s.cache.wrote(Key{UserID: userID})
	prefix, keys, err := s.userKeys(userID)
	if err != nil {
		return 0, err
	}
	keepHash := ""
	if keep.UserID == userID && validHash(keep.Hash) {
		keepHash = keep.Hash
	}
	res, err := s.runDurable(ctx, scriptRevokeAll, keys, prefix, keepHash, revocationMemory.Milliseconds())
	n, _ := res.(int64)
	if err != nil {
		return 0, fmt.Errorf("session: redis revoke all: %w", err)
	}
	return int(n), nil
}
