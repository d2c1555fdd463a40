// Command example is the demo app (package demo) on the stores the core
// module has: a visit counter and a cart for anonymous visitors, sign in
// (token rotation), an account page, a devices page with per-device revoke
// and "log out other devices", and sign out.
//
//	go run ./example                         # embedded Redis (miniredis): nothing to install
//	REDIS_URL=redis://127.0.0.1:6379/0 go run ./example
//	go run ./example -fallback               # Redis behind a FallbackStore
//	go run ./example -store=memory           # MemoryStore
//	go run ./example -addr 127.0.0.1:9090
//	go run ./example -insecure               # no Secure attribute, for Safari on http://localhost
//
// SESSION_SECRET (32 bytes or more) keeps sessions valid across restarts;
// without it the app makes a random secret for this run and says so.
//
// The same app on PostgreSQL is github.com/sessionkit/session/pgstore/cmd/demo,
// in the pgstore module, so that this module needs no PostgreSQL driver.
package main

import "github.com/sessionkit/session/example/demo"

func main() { demo.Main(nil) }
