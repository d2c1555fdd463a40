// Package session is session middleware for net/http, backed by Redis or
// by memory.
//
// A signed and encrypted cookie carries an opaque 256-bit token; the token's
// SHA-256 names one Redis hash per session, kept under the user's ID once
// they log in. Sessions end after IdleTimeout without use and after
// Lifetime in any case, both enforced by the store.
//
//	store, err := session.NewRedisStore(redisClient, session.RedisOptions{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	m, err := session.New(session.Options{
//		Store:   store,
//		Secrets: [][]byte{secret}, // 32+ random bytes, newest first
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	http.ListenAndServe(addr, m.Middleware(mux))
//
// Inside a handler:
//
//	s, err := m.Load(r.Context())     // first call reads the store
//	s.Set("cart", "3 apples")         // saved, field by field, before the first byte
//	msg, ok := s.Pop("flash")         // read once
//	err = s.Login(r.Context(), "u42") // new token as the response starts; the old cookie dies
//	err = s.Logout(r.Context())       // deleted everywhere at once; cookie cleared
//
// The request's changes take effect as its response starts, in one call
// from the response writer into the session: a Login or Renew rotates the
// token then, and the changed values are saved then. A handler that panics
// or answers 5xx changes nothing; if the store refuses, Options.ErrorHandler
// answers instead of the handler's response.
//
// # What a request costs
//
// A request that never calls Load decodes no cookie and makes no store call.
// Reading an existing session is one Redis round trip of plain reads that
// write nothing; at most once per TouchInterval a second one, a script,
// slides the idle TTL and records last-seen. Changing it is one more round
// trip, which writes only the changed fields.
//
// # What an application uses
//
// An application needs only Manager (from New, with Options and
// CookieOptions), Session (from Manager.Load; LoginOptions for "remember
// me"), Info (from Manager.Sessions) and one of the stores: NewMemoryStore, NewRedisStore, or NewFallbackStore
// around a RedisStore. Observer and Event are for metrics; the Err
// variables are for errors.Is.
//
// # Implementing a Store
//
// The Store interface and the types its methods take are plumbing between
// the Manager and a store; an application never builds them. Key names a
// session (its user and the hash of its token, never the token), Record is
// what a store keeps for one, Change is a per-field write, Rotation a token
// rotation, Client the device a request came from, and Policy the
// Manager's timing options, passed into every call; ValidateUserID says
// which user IDs a store must accept. The doc comments of
// Store's methods are the contract: what "not found" means, that no write
// brings back an ended session, that idle and absolute expiry are the
// store's job, and what Incr counts as an integer. Package sessiontest
// checks a store against it:
//
//	func TestMyStore(t *testing.T) {
//		sessiontest.RunStoreTests(t, sessiontest.Harness{
//			New:     func(t *testing.T) session.Store { return newMyStore(t) },
//			Advance: func(t *testing.T, d time.Duration) { time.Sleep(d) },
//			Unit:    50 * time.Millisecond,
//		})
//	}
//
// MemoryStore, RedisStore (on miniredis and on a real Redis) and
// FallbackStore (while its Redis is up) all pass it.
//
// # Security
//
//   - Fail closed: a missing, forged, expired, revoked or ambiguous cookie is
//     an anonymous session, never an error and never someone else's. A cookie
//     whose MAC fails costs no store call.
//   - Tokens are never adopted: a session is only ever created with a fresh
//     token, and Login and Renew replace it.
//   - Nothing is resurrected: a request in flight cannot bring back a
//     session that was logged out or revoked. Logins and revocations are
//     scripts that do nothing if the session has ended; an everyday write
//     that finds it ended is deleted before it returns, and is no session
//     meanwhile (SECURITY.md).
//   - The token never reaches the store or the logs; stores see its SHA-256,
//     logs a keyed hash.
//   - Cookies default to __Host-session, Secure, HttpOnly, SameSite=Lax,
//     Path=/. Responses that set one carry Cache-Control: no-store, and
//     responses that loaded a session Vary: Cookie.
//
// What the application must still do: serve over TLS, protect state-changing
// requests against CSRF (SameSite=Lax helps; http.CrossOriginProtection
// does more), keep the secrets secret, and call Login only after
// authenticating the user and Renew when their privileges change.
package session
