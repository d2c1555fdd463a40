package session

import (
	"context"
	"encoding/base64"
	"fmt"
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
// Every step that runs more than one command is one Lua script or one
// MULTI (a read: one pipeline on a single node), so it costs one round trip;
// see store_redis_read.go for the everyday reads and writes, which go
// without a script.
//
// Session reads go to primaries, as they must (a replica may not have seen a
// logout yet): scripts (EVAL, EVALSHA) and MULTIs holding a write are not
// flagged read-only, so a cluster client routes them to the slot's primary
// even with ReadOnly, RouteRandomly or RouteByLatency set, and every read
// carries a write that never applies. A client that talks to a replica only
// (FailoverOptions.ReplicaOnly with NewFailoverClient, or a plain client on
// a replica's address) fails every write and every read of a live session
// with a READONLY error.
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
// LocalCache.Size, a LocalCache on a Ring or any client other than
// *redis.Client and *redis.ClusterClient) with
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
	s := &RedisStore{c: c, prefix: opts.Prefix, waitReplicas: opts.WaitReplicas, waitTimeout: opts.WaitTimeout}
	s.cluster, _ = c.(*redis.ClusterClient)
	if s.prefix == "" {
		s.prefix = "session:"
	}
	if s.waitTimeout == 0 {
		s.waitTimeout = DefaultWaitTimeout
	}
	if opts.LocalCache.Size > 0 {
		cache, err := newRedisCache(s, c, opts.LocalCache.Size)
		if err != nil {
			return nil, err
		}
		s.cache = cache
	}
	return s, nil
}

// Close stops the local cache's connections, if the store has a cache; it
// does not close the client. Without a cache it does nothing.
func (s *RedisStore) Close() error { return s.cache.Close() }

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
	} else if rec, err := s.readPlain(ctx, k, keys, p); err != errNeedsScript {
		return rec, err
	}
	return s.loadScript(ctx, k, keys, c, p)
}

// loadScript loads k by the load script, which also slides its TTL,
// touches it when due and deletes it if dead.
func (s *RedisStore) loadScript(ctx context.Context, k Key, keys []string, c Client, p Policy) (Record, error) {
	res, err := s.runLoad(ctx, k, p, keys, k.Hash, k.UserID,
		millis(p.IdleTimeout), p.TouchInterval.Milliseconds(), c.UserAgent, c.IP).Result()
	if err != nil {
		return Record{}, fmt.Errorf("session: redis load: %w", err)
	}
	return parseHash(k, res)
}

// Update implements Store, by plain commands (store_redis_read.go).
func (s *RedisStore) Update(ctx context.Context, k Key, c Change, p Policy) error {
	keys, err := s.keys(k)
	if err != nil {
		return err
	}
	_, err = s.runPlain(ctx, plainUpdate(k, keys, c, p.IdleTimeout), p, changedNext(c))
	return err
}

// Incr implements Store, by plain commands (store_redis_read.go).
func (s *RedisStore) Incr(ctx context.Context, k Key, name string, delta int64, p Policy) (int64, error) {
	keys, err := s.keys(k)
	if err != nil {
		return 0, err
	}
	res, err := s.runPlain(ctx, plainIncr(k, keys, name, delta, p.IdleTimeout), p, incrNext(name))
	if err != nil {
		return 0, err
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
