// Package pgstore keeps sessions in PostgreSQL (Store), optionally with Redis
// as a read cache in front of it (CachedStore). It is its own module, so that
// the core module does not depend on a PostgreSQL driver.
//
// The schema is created by Migrate, which an application calls once at
// start-up or from its own migration tool; no request ever creates a table.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionkit/session"
)

// Options configures New. The zero value means the defaults.
type Options struct {
	// CleanupInterval, if above 0, starts a janitor goroutine that deletes
	// expired sessions every CleanupInterval, CleanupBatch rows per
	// statement, until none are left. Close stops it. Default 0: no janitor
	// (call Cleanup yourself, e.g. from a cron job).
	CleanupInterval time.Duration
	// CleanupBatch bounds how many rows one cleanup statement deletes, so
	// that cleanup never holds many row locks or writes a huge transaction.
	// Default 1000.
	CleanupBatch int
	// Timeout bounds every operation (on top of the caller's context), so
	// that an unreachable or stuck PostgreSQL gives an error, never a hang.
	// Default 5s.
	Timeout time.Duration
}

// DefaultTimeout is Options.Timeout's default.
const DefaultTimeout = 5 * time.Second

// DefaultCleanupBatch is Options.CleanupBatch's default.
const DefaultCleanupBatch = 1000

// Store keeps sessions in PostgreSQL: one row per session in
// session_sessions, its values one row each in session_values. It is safe
// for concurrent use. The zero value is not usable: use New.
//
// Every time is the database's (now()), so application servers with skewed
// clocks agree. Every operation is one statement, one pipelined batch (an
// implicit transaction) or one transaction, so it is atomic. Operations that
// change which sessions a user has (Create and Rotate of a user's session,
// Revoke, RevokeAll) first take a transaction-scoped advisory lock on the
// user, so they run one at a time per user; reads and value writes only lock
// the session's row. A write finds its session with a condition that it is
// still live and changes nothing otherwise, so no write brings back a
// session that ended. Revoke remembers the public IDs it ended and RevokeAll
// the time it ran, so that a restored record (session.Store.Create) cannot
// outlive either; Cleanup forgets them once they can no longer matter.
//
// Errors: session.ErrNotFound (or a wrapper) for a session that does not
// exist; an error wrapping session.ErrRefused when PostgreSQL answered with
// an error (nothing was applied); any other error when it could not be
// reached or did not answer within Options.Timeout.
type Store struct {
	pool *pgxpool.Pool
	opts Options

	// clockOffset is added to the database's clock, in microseconds: tests
	// move time forward with it instead of sleeping.
	clockOffset atomic.Int64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// New returns a Store on pool. The schema must exist: call Migrate first.
// If opts.CleanupInterval is set, New starts the janitor; Close stops it.
func New(pool *pgxpool.Pool, opts Options) (*Store, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: pgstore: nil pool", session.ErrInvalidOptions)
	}
	if opts.CleanupInterval < 0 || opts.CleanupBatch < 0 || opts.Timeout < 0 {
		return nil, fmt.Errorf("%w: pgstore: negative CleanupInterval, CleanupBatch or Timeout", session.ErrInvalidOptions)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.CleanupBatch == 0 {
		opts.CleanupBatch = DefaultCleanupBatch
	}
	s := &Store{pool: pool, opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	if opts.CleanupInterval > 0 {
		go s.janitor(opts.CleanupInterval)
	} else {
		close(s.done)
	}
	return s, nil
}

// Close stops the janitor, if any, and waits for it. It does not close the
// pool, which the caller owns.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
	})
	return nil
}

func (s *Store) janitor(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), every)
			for {
				n, err := s.Cleanup(ctx, s.opts.CleanupBatch)
				if err != nil || n < s.opts.CleanupBatch {
					break
				}
				select {
				case <-s.stop:
					cancel()
					return
				default:
				}
			}
			cancel()
		}
	}
}

// Cleanup deletes up to batch expired sessions (idle or absolute) and
// returns how many it deleted. Sessions locked by a request in flight are
// skipped, to be found next time. It also forgets up to batch revoked
// public IDs whose sessions would have expired, and up to batch RevokeAll
// times older than a day. A batch below 1 means Options.CleanupBatch.
func (s *Store) Cleanup(ctx context.Context, batch int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if batch < 1 {
		batch = s.opts.CleanupBatch
	}
	a := s.args(pgx.NamedArgs{"n": batch, "keep": revocationMemory.Microseconds()})
	tag, err := s.pool.Exec(ctx, sqlCleanup, a)
	if err != nil {
		return 0, wrap("cleanup", err)
	}
	for _, q := range []string{sqlCleanupRevokedIDs, sqlCleanupRevokedAll} {
		if _, err := s.pool.Exec(ctx, q, a); err != nil {
			return 0, wrap("cleanup", err)
		}
	}
	return int(tag.RowsAffected()), nil
}

// errSessionExists: Create found the key taken by a live session. It is
// session.ErrSessionExists, and, being the store's answer, session.ErrRefused.
var errSessionExists = fmt.Errorf("%w (%w)", session.ErrSessionExists, session.ErrRefused)

// errRevoked: a restored record that a revocation ended (session.Store.Create).
var errRevoked = fmt.Errorf("%w: revoked", session.ErrNotFound)

// revocationMemory is how long RevokeAll's time is kept for restored
// records to be checked against, as RedisStore keeps it.
const revocationMemory = 24 * time.Hour

// now is the store's clock in SQL: the transaction's time, plus the offset
// tests use to move time.
const now = "(now() + @off::bigint * interval '1 microsecond')"

// live is the condition that a session row is neither idle-expired nor past
// its absolute end.
const live = "(idle_ends > " + now + " AND expires > " + now + ")"

// us turns a named bigint argument of microseconds into an interval.
func us(name string) string { return "(@" + name + "::bigint * interval '1 microsecond')" }

// args adds the clock offset to a query's named arguments.
func (s *Store) args(a pgx.NamedArgs) pgx.NamedArgs {
	a["off"] = s.clockOffset.Load()
	return a
}

var (
	sqlCleanup = `DELETE FROM session_sessions WHERE hash IN (
  SELECT hash FROM session_sessions WHERE idle_ends <= ` + now + `
  ORDER BY idle_ends LIMIT @n FOR UPDATE SKIP LOCKED)`

	// recordColumns, read by scanRecord, with the values as two arrays in
	// name order.
	recordColumns = `id, created, last_seen, expires, user_agent, ip, remembered, version,
  greatest(1, (extract(epoch FROM least(idle_ends, expires) - ` + now + `) * 1000)::bigint),
  greatest(0, (extract(epoch FROM ` + now + ` - last_seen) * 1000)::bigint),
  ARRAY(SELECT name FROM session_values v WHERE v.hash = s.hash ORDER BY name),
  ARRAY(SELECT value FROM session_values v WHERE v.hash = s.hash ORDER BY name)`

	sqlLoad = `UPDATE session_sessions s SET
  idle_ends = least(` + now + ` + coalesce(own_idle_us, @idle) * interval '1 microsecond', expires),
  last_seen = CASE WHEN ` + now + ` - last_seen >= ` + us("touch") + ` THEN ` + now + ` ELSE last_seen END,
  user_agent = CASE WHEN ` + now + ` - last_seen >= ` + us("touch") + ` THEN @ua ELSE user_agent END,
  ip = CASE WHEN ` + now + ` - last_seen >= ` + us("touch") + ` THEN @ip ELSE ip END,
  version = nextval('session_version_seq')
WHERE hash = @h AND user_id = @u AND ` + live + `
RETURNING ` + recordColumns

	// sqlSlide locks a live session's row and slides its idle expiry: the
	// first statement of every value write.
	sqlSlide = `UPDATE session_sessions SET
  idle_ends = least(` + now + ` + coalesce(own_idle_us, @idle) * interval '1 microsecond', expires),
  version = nextval('session_version_seq')
WHERE hash = @h AND user_id = @u AND ` + live + `
RETURNING version`

	// The value statements run after sqlSlide in the same transaction, so
	// the row is locked and they see every write committed before; the
	// EXISTS keeps them from writing under a session that sqlSlide did not
	// find.
	sqlDeleteValues = `DELETE FROM session_values WHERE hash = @h AND name = ANY(@del::bytea[])
  AND EXISTS (SELECT 1 FROM session_sessions WHERE hash = @h AND user_id = @u AND ` + live + `)`
	sqlSetValues = `INSERT INTO session_values (hash, name, value)
SELECT @h, n, v FROM unnest(@names::bytea[], @vals::bytea[]) AS t(n, v)
WHERE EXISTS (SELECT 1 FROM session_sessions WHERE hash = @h AND user_id = @u AND ` + live + `)
ON CONFLICT (hash, name) DO UPDATE SET value = excluded.value`

	sqlGetValue = `SELECT value FROM session_values WHERE hash = @h AND name = @name`

	sqlLockUser = `SELECT pg_advisory_xact_lock(@lockclass::int, @lockkey::int)`

	sqlDeleteDead = `DELETE FROM session_sessions WHERE hash = @h AND NOT ` + live

	sqlInsert = `INSERT INTO session_sessions AS s
  (hash, user_id, id, created, last_seen, expires, idle_ends, user_agent, ip, remembered, own_idle_us)
SELECT @h, @u, @id, created, t.now, expires, least(t.now + coalesce(@own::bigint, @idle) * interval '1 microsecond', expires),
  @ua, @ip, @rem, @own
FROM (SELECT ` + now + ` AS now) t,
  LATERAL (SELECT coalesce(@created::timestamptz, t.now) AS created,
    coalesce(@expires::timestamptz, t.now + ` + us("life") + `) AS expires) x
WHERE expires > t.now
ON CONFLICT (hash) DO NOTHING
RETURNING created, last_seen, expires, version,
  greatest(1, (extract(epoch FROM least(idle_ends, expires) - ` + now + `) * 1000)::bigint)`

	sqlExists = `SELECT EXISTS (SELECT 1 FROM session_sessions WHERE hash = @h)`

	// sqlCap deletes the user's sessions beyond the cap: every dead one and
	// the least recently seen live ones, never keep.
	sqlCap = `DELETE FROM session_sessions WHERE user_id = @u AND hash <> @keep AND hash NOT IN (
  SELECT hash FROM session_sessions WHERE user_id = @u AND hash <> @keep AND ` + live + `
  ORDER BY last_seen DESC, created DESC LIMIT @others)
RETURNING hash, expires, nextval('session_version_seq')`

	sqlLockForRotate = `SELECT id, created, expires, remembered, own_idle_us,
  ARRAY(SELECT name FROM session_values v WHERE v.hash = s.hash ORDER BY name),
  ARRAY(SELECT value FROM session_values v WHERE v.hash = s.hash ORDER BY name)
FROM session_sessions s WHERE hash = @h AND user_id = @u AND ` + live + ` FOR UPDATE`

	sqlDelete = `DELETE FROM session_sessions WHERE hash = @h AND user_id = @u
RETURNING expires, nextval('session_version_seq')`

	sqlList = `SELECT id, created, last_seen, expires, user_agent, ip, remembered
FROM session_sessions WHERE user_id = @u AND ` + live

	// sqlRevoke also remembers the public ID it ended, until that session
	// would have expired, for restored records to be checked against.
	sqlRevoke = `WITH d AS (
  DELETE FROM session_sessions WHERE user_id = @u AND id = @id
  RETURNING hash, expires, nextval('session_version_seq') AS version, ` + live + ` AS alive),
r AS (
  INSERT INTO session_revoked_ids (user_id, id, expires)
  SELECT @u, @id, max(expires) FROM d WHERE alive HAVING count(*) > 0
  ON CONFLICT (user_id, id) DO UPDATE SET expires = greatest(session_revoked_ids.expires, excluded.expires))
SELECT hash, expires, version, alive FROM d`

	sqlRevokedAll = `INSERT INTO session_revoked_all (user_id, at) VALUES (@u, ` + now + `)
ON CONFLICT (user_id) DO UPDATE SET at = excluded.at`

	// sqlRestoreRevoked: did a revocation end the restored record?
	sqlRestoreRevoked = `SELECT
  EXISTS (SELECT 1 FROM session_revoked_ids WHERE user_id = @u AND id = @id AND expires > ` + now + `)
  OR EXISTS (SELECT 1 FROM session_revoked_all WHERE user_id = @u AND @horizon::timestamptz IS NOT NULL AND at > @horizon::timestamptz)`

	sqlCleanupRevokedIDs = `DELETE FROM session_revoked_ids WHERE (user_id, id) IN (
  SELECT user_id, id FROM session_revoked_ids WHERE expires <= ` + now + ` LIMIT @n FOR UPDATE SKIP LOCKED)`
	sqlCleanupRevokedAll = `DELETE FROM session_revoked_all WHERE user_id IN (
  SELECT user_id FROM session_revoked_all WHERE at <= ` + now + ` - ` + us("keep") + ` LIMIT @n FOR UPDATE SKIP LOCKED)`

	sqlRevokeAll = `DELETE FROM session_sessions WHERE user_id = @u AND hash <> @keep
RETURNING hash, expires, nextval('session_version_seq'), ` + live
)

// lockClass is the first key of the store's advisory locks, so they do not
// meet an application's own (which mostly use the one-bigint form).
const lockClass = 0x5e551

// userLockKey is the second key of userID's advisory lock. Two users whose
// IDs hash alike only wait for each other; their sessions stay apart.
func userLockKey(userID string) int32 {
	h := fnv.New32a()
	h.Write(bs(userID))
	return int32(h.Sum32())
}

// userLock returns sqlLockUser's arguments for userID.
func userLock(userID string) pgx.NamedArgs {
	return lockArgs(userLockKey(userID))
}

func lockArgs(key int32) pgx.NamedArgs {
	return pgx.NamedArgs{"lockclass": lockClass, "lockkey": key}
}

// bs converts s for a bytea parameter: never nil, which pgx would send as
// NULL, so an empty string stays an empty byte string.
func bs(s string) []byte {
	if s == "" {
		return []byte{}
	}
	return []byte(s)
}

func micros(d time.Duration) int64 { return max(1, d.Microseconds()) }

// validHash reports whether h looks like the Manager's token hash: 43
// base64url characters (a SHA-256).
func validHash(h string) bool {
	if len(h) != 43 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func checkKey(k session.Key) error {
	if !validHash(k.Hash) {
		return session.ErrNotFound
	}
	if k.UserID != "" {
		return session.ValidateUserID(k.UserID)
	}
	return nil
}

// wrap prefixes a database error; ErrNotFound and friends pass through. An
// error PostgreSQL answered with is marked session.ErrRefused (see
// session.Store): the statement, and its transaction, did not apply.
func wrap(op string, err error) error {
	if err == nil || errors.Is(err, session.ErrNotFound) || errors.Is(err, session.ErrNotInteger) ||
		errors.Is(err, session.ErrInvalidUserID) || errors.Is(err, errSessionExists) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && answered(pgErr.Code) {
		return fmt.Errorf("session: postgres %s: %w: %w", op, session.ErrRefused, err)
	}
	return fmt.Errorf("session: postgres %s: %w", op, err)
}

// answered reports whether an error with SQLSTATE code is PostgreSQL's
// answer to the statement (a missing table, a full disk, a read-only
// standby, a deadlock victim), rather than a sign that it cannot answer:
// connection exceptions (08), operator intervention such as a shutdown or a
// cancelled statement (57), too many connections (53300), system and
// internal errors (58, XX).
func answered(code string) bool {
	if len(code) != 5 || code == "53300" {
		return false
	}
	switch code[:2] {
	case "08", "57", "58", "XX":
		return false
	}
	return true
}

// row is what scanRecord reads.
type row interface{ Scan(dest ...any) error }

// stored is a session as a statement left it: its record, its version, how
// long it has to live unless used again (idle or absolute, whichever ends
// first) and how old its last-seen time is, by the database's clock.
type stored struct {
	rec     session.Record
	version int64
	ttl     time.Duration
	seenAge time.Duration
}

// scanRecord reads recordColumns into a session of k.
func scanRecord(r row, k session.Key) (stored, error) {
	var (
		id, ua, ip    []byte
		names, values [][]byte
		st            = stored{rec: session.Record{UserID: k.UserID}}
		ttlMillis     int64
		ageMillis     int64
	)
	rec := &st.rec
	if err := r.Scan(&id, &rec.Created, &rec.LastSeen, &rec.Expires, &ua, &ip, &rec.Remembered, &st.version, &ttlMillis, &ageMillis, &names, &values); err != nil {
		return stored{}, err
	}
	if len(names) != len(values) {
		return stored{}, fmt.Errorf("%w: value arrays differ in length", session.ErrInconsistent)
	}
	rec.ID, rec.UserAgent, rec.IP = string(id), string(ua), string(ip)
	rec.Values = make(map[string]string, len(names))
	for i, n := range names {
		rec.Values[string(n)] = string(values[i])
	}
	st.ttl = time.Duration(ttlMillis) * time.Millisecond
	st.seenAge = time.Duration(ageMillis) * time.Millisecond
	return st, nil
}

// Create implements session.Store.
func (s *Store) Create(ctx context.Context, k session.Key, rec session.Record, p session.Policy) (session.Record, error) {
	st, _, err := s.create(ctx, k, rec, p)
	return st.rec, err
}

// create is Create, also returning the new row's version and TTL and the
// sessions the cap ended.
func (s *Store) create(ctx context.Context, k session.Key, rec session.Record, p session.Policy) (out stored, capped []ended, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := checkKey(k); err != nil {
		return stored{}, nil, err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if k.UserID != "" {
			if _, err := tx.Exec(ctx, sqlLockUser, userLock(k.UserID)); err != nil {
				return err
			}
		}
		if k.UserID != "" && !rec.Expires.IsZero() {
			// A restored record: checked under the user's lock, so no
			// revocation slips in between the check and the insert.
			a := pgx.NamedArgs{"u": bs(k.UserID), "id": bs(rec.ID), "horizon": nil}
			if !rec.Horizon.IsZero() {
				a["horizon"] = rec.Horizon
			}
			var revoked bool
			if err := tx.QueryRow(ctx, sqlRestoreRevoked, s.args(a)).Scan(&revoked); err != nil {
				return err
			}
			if revoked {
				return errRevoked
			}
		}
		out, err = s.insert(ctx, tx, k, rec, rec.Values, p, !rec.Expires.IsZero())
		if err != nil {
			return err
		}
		capped, err = s.capUser(ctx, tx, k, p.MaxSessionsPerUser)
		return err
	})
	if err != nil {
		return stored{}, nil, wrap("create", err)
	}
	return out, capped, nil
}

// insert creates k's row and values inside tx, which holds the user's lock.
// keepTimes keeps rec's Created and Expires instead of starting a lifetime.
func (s *Store) insert(ctx context.Context, tx pgx.Tx, k session.Key, rec session.Record, values map[string]string, p session.Policy, keepTimes bool) (stored, error) {
	if _, err := tx.Exec(ctx, sqlDeleteDead, s.args(pgx.NamedArgs{"h": k.Hash})); err != nil {
		return stored{}, err
	}
	a := pgx.NamedArgs{
		"h": k.Hash, "u": bs(k.UserID), "id": bs(rec.ID),
		"ua": bs(rec.UserAgent), "ip": bs(rec.IP), "rem": rec.Remembered,
		"idle": micros(p.IdleTimeout), "life": micros(p.Lifetime),
		"own": nil, "created": nil, "expires": nil,
	}
	if rec.Remembered {
		a["own"] = micros(p.IdleTimeout)
	}
	if keepTimes {
		a["created"], a["expires"] = rec.Created, rec.Expires
	}
	var st stored
	var ttlMillis int64
	err := tx.QueryRow(ctx, sqlInsert, s.args(a)).Scan(&rec.Created, &rec.LastSeen, &rec.Expires, &st.version, &ttlMillis)
	if errors.Is(err, pgx.ErrNoRows) {
		var exists bool
		if err := tx.QueryRow(ctx, sqlExists, pgx.NamedArgs{"h": k.Hash}).Scan(&exists); err != nil {
			return stored{}, err
		}
		if exists {
			return stored{}, errSessionExists
		}
		return stored{}, fmt.Errorf("%w: the session's absolute end has passed", session.ErrNotFound)
	}
	if err != nil {
		return stored{}, err
	}
	if len(values) > 0 {
		names, vals := columns(values)
		if _, err := tx.Exec(ctx, sqlSetValues, s.args(pgx.NamedArgs{"h": k.Hash, "u": bs(k.UserID), "names": names, "vals": vals})); err != nil {
			return stored{}, err
		}
	}
	rec.UserID = k.UserID
	rec.Values = make(map[string]string, len(values))
	for n, v := range values {
		rec.Values[n] = v
	}
	st.rec, st.ttl = rec, time.Duration(ttlMillis)*time.Millisecond
	return st, nil
}

// ended is a session a store operation deleted: its hash, its absolute end
// and a version drawn after the delete, larger than any the session had
// (the cache refuses to fill it with anything older).
type ended struct {
	hash    string
	expires time.Time
	version int64
}

// capUser deletes keep's user's sessions beyond max (0: no cap), never
// keep, and returns them. The caller holds the user's lock.
func (s *Store) capUser(ctx context.Context, tx pgx.Tx, keep session.Key, max int) ([]ended, error) {
	if keep.UserID == "" || max <= 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, sqlCap, s.args(pgx.NamedArgs{"u": bs(keep.UserID), "keep": keep.Hash, "others": max - 1}))
	if err != nil {
		return nil, err
	}
	var out []ended
	for rows.Next() {
		var e ended
		if err := rows.Scan(&e.hash, &e.expires, &e.version); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// columns splits values into parallel name and value arrays.
func columns(values map[string]string) (names, vals [][]byte) {
	names = make([][]byte, 0, len(values))
	vals = make([][]byte, 0, len(values))
	for n, v := range values {
		names = append(names, bs(n))
		vals = append(vals, bs(v))
	}
	return names, vals
}

// Load implements session.Store.
func (s *Store) Load(ctx context.Context, k session.Key, c session.Client, p session.Policy) (session.Record, error) {
	st, err := s.load(ctx, k, c, p)
	return st.rec, err
}

func (s *Store) load(ctx context.Context, k session.Key, c session.Client, p session.Policy) (stored, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := checkKey(k); err != nil {
		return stored{}, err
	}
	r := s.pool.QueryRow(ctx, sqlLoad, s.args(pgx.NamedArgs{
		"h": k.Hash, "u": bs(k.UserID), "idle": micros(p.IdleTimeout), "touch": p.TouchInterval.Microseconds(),
		"ua": bs(c.UserAgent), "ip": bs(c.IP),
	}))
	st, err := scanRecord(r, k)
	if errors.Is(err, pgx.ErrNoRows) {
		return stored{}, session.ErrNotFound
	}
	return st, wrap("load", err)
}

// Update implements session.Store.
func (s *Store) Update(ctx context.Context, k session.Key, c session.Change, p session.Policy) error {
	_, err := s.update(ctx, k, c, p)
	return err
}

// update is Update, returning the row's new version. One round trip: the
// statements go as one batch, which PostgreSQL runs as one transaction.
func (s *Store) update(ctx context.Context, k session.Key, c session.Change, p session.Policy) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := checkKey(k); err != nil {
		return 0, err
	}
	var del [][]byte
	for _, n := range c.Delete {
		if _, set := c.Set[n]; !set {
			del = append(del, bs(n))
		}
	}
	names, vals := columns(c.Set)
	b := &pgx.Batch{}
	a := s.args(pgx.NamedArgs{"h": k.Hash, "u": bs(k.UserID), "idle": micros(p.IdleTimeout), "del": del, "names": names, "vals": vals})
	var version int64
	found := false
	b.Queue(sqlSlide, a).QueryRow(func(r pgx.Row) error {
		err := r.Scan(&version)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	if len(del) > 0 {
		b.Queue(sqlDeleteValues, a)
	}
	if len(names) > 0 {
		b.Queue(sqlSetValues, a)
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return 0, wrap("update", err)
	}
	if !found {
		return 0, session.ErrNotFound
	}
	return version, nil
}

// Incr implements session.Store.
func (s *Store) Incr(ctx context.Context, k session.Key, name string, delta int64, p session.Policy) (int64, error) {
	n, _, err := s.incr(ctx, k, name, delta, p)
	return n, err
}

func (s *Store) incr(ctx context.Context, k session.Key, name string, delta int64, p session.Policy) (n, version int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := checkKey(k); err != nil {
		return 0, 0, err
	}
	a := s.args(pgx.NamedArgs{"h": k.Hash, "u": bs(k.UserID), "idle": micros(p.IdleTimeout), "name": bs(name)})
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, sqlSlide, a).Scan(&version); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return session.ErrNotFound
			}
			return err
		}
		var old []byte
		err := tx.QueryRow(ctx, sqlGetValue, a).Scan(&old)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		values := map[string]string{}
		if err == nil {
			values[name] = string(old)
		}
		if n, err = addInt(values, name, delta); err != nil {
			return err
		}
		a["names"], a["vals"] = [][]byte{bs(name)}, [][]byte{fmt.Appendf(nil, "%d", n)}
		_, err = tx.Exec(ctx, sqlSetValues, a)
		return err
	})
	return n, version, wrap("incr", err)
}

// Rotate implements session.Store. The whole rotation is one transaction:
// it takes the advisory locks of both users (in a fixed order), locks
// r.From's row, checks everything that can refuse, then deletes r.From and
// inserts r.To. So it is atomic with every Revoke and RevokeAll, whichever
// users are involved, and a refused rotation changes nothing.
func (s *Store) Rotate(ctx context.Context, r session.Rotation, p session.Policy) (session.Record, error) {
	st, _, err := s.rotate(ctx, r, p)
	return st.rec, err
}

// rotate is Rotate, also returning the new row's version and the sessions
// it ended (r.From and any beyond the cap).
func (s *Store) rotate(ctx context.Context, r session.Rotation, p session.Policy) (out stored, gone []ended, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := checkKey(r.To); err != nil {
		return stored{}, nil, err
	}
	if r.From.IsZero() && r.Renew {
		return stored{}, nil, session.ErrNotFound
	}
	fromOK := !r.From.IsZero() && checkKey(r.From) == nil
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		gone = nil
		// Both users' locks, in key order, so that two rotations between
		// the same users cannot deadlock.
		var locks []int32
		for _, u := range []string{r.To.UserID, r.From.UserID} {
			if u != "" && (u == r.To.UserID || fromOK) {
				locks = append(locks, userLockKey(u))
			}
		}
		slices.Sort(locks)
		for _, l := range slices.Compact(locks) {
			if _, err := tx.Exec(ctx, sqlLockUser, lockArgs(l)); err != nil {
				return err
			}
		}
		var (
			old      bool
			oldRec   session.Record
			ownIdle  *int64
			oldNames [][]byte
			oldVals  [][]byte
			id       []byte
		)
		if fromOK {
			err := tx.QueryRow(ctx, sqlLockForRotate, s.args(pgx.NamedArgs{"h": r.From.Hash, "u": bs(r.From.UserID)})).
				Scan(&id, &oldRec.Created, &oldRec.Expires, &oldRec.Remembered, &ownIdle, &oldNames, &oldVals)
			switch {
			case err == nil:
				old = true
			case errors.Is(err, pgx.ErrNoRows):
			default:
				return err
			}
		}
		if r.Renew && !old {
			return session.ErrNotFound
		}
		rec := r.Record
		values := rec.Values
		if old {
			values = make(map[string]string, len(oldNames))
			for i, n := range oldNames {
				values[string(n)] = string(oldVals[i])
			}
		}
		values = apply(r.Change, values)
		pp := p
		if r.Renew {
			rec.ID, rec.Created, rec.Expires, rec.Remembered = string(id), oldRec.Created, oldRec.Expires, oldRec.Remembered
			if ownIdle != nil {
				pp.IdleTimeout = time.Duration(*ownIdle) * time.Microsecond
			}
		}
		if old {
			e := ended{hash: r.From.Hash}
			if err := tx.QueryRow(ctx, sqlDelete, pgx.NamedArgs{"h": r.From.Hash, "u": bs(r.From.UserID)}).Scan(&e.expires, &e.version); err != nil {
				return err
			}
			gone = append(gone, e)
		}
		// insert refuses a live r.To with errSessionExists, which rolls back
		// the delete above: a refused rotation leaves r.From as it was.
		var err error
		out, err = s.insert(ctx, tx, r.To, rec, values, session.Policy{
			IdleTimeout: pp.IdleTimeout, Lifetime: p.Lifetime, TouchInterval: p.TouchInterval,
		}, r.Renew)
		if err != nil {
			return err
		}
		capped, err := s.capUser(ctx, tx, r.To, p.MaxSessionsPerUser)
		gone = append(gone, capped...)
		return err
	})
	if err != nil {
		return stored{}, nil, wrap("rotate", err)
	}
	return out, gone, nil
}

// apply returns values with c applied (deletes first, then sets), leaving
// values untouched.
func apply(c session.Change, values map[string]string) map[string]string {
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

// Delete implements session.Store.
func (s *Store) Delete(ctx context.Context, k session.Key) error {
	_, err := s.delete(ctx, k)
	return err
}

func (s *Store) delete(ctx context.Context, k session.Key) ([]ended, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if !validHash(k.Hash) {
		return nil, nil
	}
	e := ended{hash: k.Hash}
	err := s.pool.QueryRow(ctx, sqlDelete, pgx.NamedArgs{"h": k.Hash, "u": bs(k.UserID)}).Scan(&e.expires, &e.version)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap("delete", err)
	}
	return []ended{e}, nil
}

// List implements session.Store. It reads the user's rows through the
// user_id index.
func (s *Store) List(ctx context.Context, userID string) ([]session.Info, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := session.ValidateUserID(userID); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, sqlList, s.args(pgx.NamedArgs{"u": bs(userID)}))
	if err != nil {
		return nil, wrap("list", err)
	}
	var out []session.Info
	for rows.Next() {
		var in session.Info
		var id, ua, ip []byte
		if err := rows.Scan(&id, &in.Created, &in.LastSeen, &in.Expires, &ua, &ip, &in.Remembered); err != nil {
			return nil, wrap("list", err)
		}
		in.ID, in.UserAgent, in.IP = string(id), string(ua), string(ip)
		out = append(out, in)
	}
	return out, wrap("list", rows.Err())
}

// Revoke implements session.Store.
func (s *Store) Revoke(ctx context.Context, userID, id string) error {
	_, err := s.revoke(ctx, userID, sqlRevoke, pgx.NamedArgs{"id": bs(id)})
	return err
}

// RevokeAll implements session.Store. One batch, so one transaction: the
// user's lock, then one DELETE by user_id, which finds every session of the
// user, whatever any index says.
func (s *Store) RevokeAll(ctx context.Context, userID string, keep session.Key) (int, error) {
	keepHash := ""
	if keep.UserID == userID {
		keepHash = keep.Hash
	}
	gone, err := s.revoke(ctx, userID, sqlRevokeAll, pgx.NamedArgs{"keep": keepHash})
	if errors.Is(err, session.ErrNotFound) {
		return 0, nil
	}
	return len(gone), err
}

// revoke runs a revocation statement under the user's lock and returns the
// live sessions it deleted (ErrNotFound if none). Dead ones it deletes too,
// but does not count.
func (s *Store) revoke(ctx context.Context, userID, query string, a pgx.NamedArgs) ([]ended, error) {
	gone, _, err := s.revokeAll(ctx, userID, query, a)
	if err == nil && len(gone) == 0 {
		err = session.ErrNotFound
	}
	return gone, err
}

// revokeAll returns the live sessions a revocation deleted, and every one
// it deleted (for the cache, which must forget dead ones too).
func (s *Store) revokeAll(ctx context.Context, userID, query string, a pgx.NamedArgs) (liveGone, all []ended, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := session.ValidateUserID(userID); err != nil {
		return nil, nil, err
	}
	a["u"] = bs(userID)
	b := &pgx.Batch{}
	b.Queue(sqlLockUser, userLock(userID))
	if query == sqlRevokeAll {
		b.Queue(sqlRevokedAll, s.args(pgx.NamedArgs{"u": bs(userID)}))
	}
	b.Queue(query, s.args(a)).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var e ended
			var alive bool
			if err := rows.Scan(&e.hash, &e.expires, &e.version, &alive); err != nil {
				return err
			}
			all = append(all, e)
			if alive {
				liveGone = append(liveGone, e)
			}
		}
		return rows.Err()
	})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, wrap("revoke", err)
	}
	return liveGone, all, nil
}
