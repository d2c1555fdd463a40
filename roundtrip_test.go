package session_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
)

// roundTrips is a go-redis hook that counts round trips (a pipeline is one)
// and commands, so the budget in DESIGN.md is checked by counting, not timing.
type roundTrips struct {
	mu       sync.Mutex
	trips    int
	commands []string
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.record(cmd)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.record(cmds...)
		return next(ctx, cmds)
	}
}

func (h *roundTrips) record(cmds ...redis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.trips++
	for _, c := range cmds {
		h.commands = append(h.commands, c.Name())
	}
}

func (h *roundTrips) reset() (trips int, commands string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	trips, commands = h.trips, strings.Join(h.commands, " ")
	h.trips, h.commands = 0, nil
	return trips, commands
}

func TestRedisRoundTripsPerRequest(t *testing.T) {
	t.Parallel()
	fake := newFakeRedis(t)
	hook := &roundTrips{}
	fake.client.AddHook(hook)
	a := newTestApp(t, newRedisStore(t, fake.client, session.RedisOptions{}), session.Options{})

	// Warm up: every script once, so EVALSHA finds it cached (a first
	// EVALSHA costs one more trip for the EVAL that loads it).
	warm := a.client(t)
	for _, target := range []string{"/set?k=a&v=1", "/get", "/set?k=a&v=2", "/login?u=warm", "/renew", "/incr?k=n", "/others", "/logout"} {
		warm.get(target)
	}
	if _, err := a.m.Sessions(t.Context(), "warm"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.m.RevokeAll(t.Context(), "warm"); err != nil {
		t.Fatal(err)
	}
	if err := a.m.Revoke(t.Context(), "warm", "none"); err == nil {
		t.Fatal("revoking a missing session succeeded")
	}

	c := a.client(t)
	step := func(name string, want int, do func()) {
		t.Helper()
		hook.reset()
		do()
		if got, cmds := hook.reset(); got != want {
			t.Errorf("%s: %d round trips (%s), want %d", name, got, cmds, want)
		}
	}
	step("a handler that never loads", 0, func() { a.client(t).get("/none") })
	step("an anonymous visitor who writes nothing", 0, func() { a.client(t).get("/load") })
	step("a new session written", 1, func() { c.get("/set?k=a&v=1") })
	step("an existing session, read only", 1, func() { c.get("/get?k=a") })
	step("an existing session, values changed", 2, func() { c.get("/set?k=a&v=2") })
	// The old session and the new one are in different cluster slots, so
	// Rotate takes two steps, creating the new session before it takes the
	// old one over (a failed create must leave the old one intact). On one
	// node both go in one pipeline, the takeover checking the create's
	// work: load, then create and takeover. (On Cluster: 3.)
	step("login from a stored anonymous session", 2, func() { c.get("/login?u=kim") })
	// Both sessions are kim's: Rotate is one script.
	step("renew", 2, func() { c.get("/renew") })
	step("a new login of the same user", 2, func() { c.get("/login?u=kim") })
	step("incr", 2, func() { c.get("/incr?k=n") })
	step("login of a visitor without a session", 1, func() { a.client(t).get("/login?u=kim") })
	step("the devices list", 1, func() {
		if list, err := a.m.Sessions(t.Context(), "kim"); err != nil || len(list) != 2 {
			t.Errorf("Sessions = %v, %v", list, err)
		}
	})
	step("log out other devices", 2, func() {
		if res := c.get("/others"); res.Header.Get("X-Count") != "1" {
			t.Errorf("LogoutOthers ended %q sessions, want 1", res.Header.Get("X-Count"))
		}
	})
	step("logout", 2, func() { c.get("/logout") })
	a.client(t).get("/login?u=kim")
	step("revoke all", 1, func() {
		if n, err := a.m.RevokeAll(t.Context(), "kim"); err != nil || n != 1 {
			t.Errorf("RevokeAll = %d, %v", n, err)
		}
	})
}

func TestTheRawTokenNeverReachesRedis(t *testing.T) {
	t.Parallel()
	fake := newFakeRedis(t)
	var sent []string
	var mu sync.Mutex
	fake.client.AddHook(argsHook(func(args []any) {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range args {
			if s, ok := a.(string); ok {
				sent = append(sent, s)
			}
		}
	}))
	a := newTestApp(t, newRedisStore(t, fake.client, session.RedisOptions{}), session.Options{})
	c := a.client(t)
	var cookies []string
	for _, target := range []string{"/set?k=a&v=1", "/login?u=lee", "/renew", "/set?k=b&v=2"} {
		c.get(target)
		cookies = append(cookies, c.cookie)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, ck := range cookies {
		for _, s := range sent {
			if strings.Contains(s, ck) {
				t.Fatalf("a cookie value was sent to Redis")
			}
		}
	}
	for _, key := range fake.m.Keys() {
		if strings.Contains(key, "lee") {
			t.Errorf("key %q holds the raw user ID; it should be encoded", key)
		}
	}
}

// argsHook passes every command's arguments to f.
type argsHook func(args []any)

func (f argsHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f argsHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		f(cmd.Args())
		return next(ctx, cmd)
	}
}
func (f argsHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			f(c.Args())
		}
		return next(ctx, cmds)
	}
}
