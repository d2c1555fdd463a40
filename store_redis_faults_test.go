package session_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/sessiontest/redistest"
)

// fillUntil writes junk keys of size bytes, 100 to a pipeline, until done
// reports true for the last one's error; at most 100,000 keys.
func fillUntil(t *testing.T, c *redis.Client, size int, done func(err error) bool) {
	t.Helper()
	ctx := context.Background()
	junk := strings.Repeat("x", size)
	for batch := range 1000 {
		pipe := c.Pipeline()
		var last *redis.StatusCmd
		for i := range 100 {
			last = pipe.Set(ctx, "junk:"+strconv.Itoa(batch*100+i), junk, time.Hour)
		}
		_, _ = pipe.Exec(ctx)
		if done(last.Err()) {
			return
		}
	}
	t.Fatal("100,000 junk keys did not bring the server to the state the test needs")
}

// infoField reads an integer field of an INFO reply.
func infoField(t *testing.T, info, name string) int64 {
	t.Helper()
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("INFO %s: %v", name, err)
			}
			return n
		}
	}
	t.Fatalf("INFO has no %s", name)
	return 0
}

func TestRedisOutOfMemoryRefusesWritesClearlyAndKeepsServingReads(t *testing.T) {
	skipIfShort(t, "fills a real Redis to its maxmemory (OOM)")
	srv := redistest.Start(t, "--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
	admin := srv.Client(t)
	// A touch is due on every read, so reads write last-seen under OOM too.
	// Redis refuses a deny-oom command (HSET) in a script only before the
	// script's first write; the load script slides the TTL (PEXPIRE, which
	// is not deny-oom) first, so its touch goes through and reads go on.
	// Update and create write with HSET or SET first and are refused whole.
	// The ErrorHandler shows the store's error, so the test can tell Redis's
	// OOM refusal from any other failure.
	showError := func(w http.ResponseWriter, r *http.Request, err error) {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	}
	a := newTestApp(t, newRedisStore(t, srv.Client(t), session.RedisOptions{}), session.Options{TouchInterval: time.Millisecond, ErrorHandler: showError})
	alice := a.client(t)
	alice.get("/login?u=alice")
	alice.body("/set?k=cart&v=apples")

	// Filled to the brim, Redis hovers at the limit and a small write can
	// slip in when buffers are freed; so once it is full, lower the limit
	// well below what it holds, and every deny-oom write is refused.
	fillUntil(t, admin, 64, func(err error) bool { return err != nil && strings.Contains(err.Error(), "OOM") })
	usedMemory := infoField(t, admin.Info(context.Background(), "memory").Val(), "used_memory")
	if err := admin.ConfigSet(context.Background(), "maxmemory", strconv.FormatInt(usedMemory/2, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Set(context.Background(), "probe", "x", time.Hour).Err(); err == nil || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("a small SET under OOM: %v, want Redis's OOM error", err)
	}
	time.Sleep(5 * time.Millisecond) // let the touch come due

	res := alice.get("/get?k=cart")
	if res.StatusCode != http.StatusOK || res.Header.Get("X-User") != "alice" || readBody(res) != "apples" {
		t.Errorf("reading an existing session under OOM: status %d, user %q; want 200, alice, apples", res.StatusCode, res.Header.Get("X-User"))
	}

	res = alice.get("/set?k=cart&v=pears")
	if res.StatusCode < 500 {
		t.Errorf("a write under OOM answered %d; want the ErrorHandler's 5xx", res.StatusCode)
	}
	if got := alice.body("/get?k=cart"); got != "apples" {
		t.Errorf("after a refused write the cart is %q, want apples", got)
	}

	bob := a.client(t)
	res = bob.get("/login?u=bob")
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode == http.StatusOK {
		if bob.get("/get").Header.Get("X-User") != "bob" {
			t.Error("a login under OOM answered 200 but left bob without a session")
		}
	} else if !strings.Contains(string(body), "OOM") {
		t.Errorf("a login under OOM failed with %d %q; want Redis's OOM error to reach the ErrorHandler", res.StatusCode, body)
	}
	assertEveryKeyHasTTL(t, admin)
}

func TestRedisEvictingASessionLeavesItsUserCleanlyAnonymous(t *testing.T) {
	skipIfShort(t, "fills a real Redis until it evicts")
	srv := redistest.Start(t, "--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru")
	admin := srv.Client(t)
	a := newTestApp(t, newRedisStore(t, srv.Client(t), session.RedisOptions{}), session.Options{})
	alice := a.client(t)
	alice.get("/login?u=alice")
	alice.body("/set?k=cart&v=apples")
	keys, err := admin.Keys(context.Background(), "session:*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("session keys: %v, %v", keys, err)
	}

	fillUntil(t, admin, 16<<10, func(error) bool {
		n, err := admin.Exists(context.Background(), keys...).Result()
		return err == nil && n < int64(len(keys))
	})

	res := alice.get("/get?k=cart")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("after eviction: status %d, want 200", res.StatusCode)
	}
	user, cart := res.Header.Get("X-User"), readBody(res)
	if user == "" && cart != "" || user == "alice" && cart != "apples" || user != "" && user != "alice" {
		t.Errorf("after eviction: user %q, cart %q; want alice with apples, or an anonymous session with nothing", user, cart)
	}
	if user == "" {
		t.Log("the session was evicted: its user is anonymous")
	} else {
		t.Log("only the user's index or generation was evicted; the session itself survived")
	}
}

func TestRedisRestartWithoutPersistenceSignsEveryoneOutWithout5xx(t *testing.T) {
	skipIfShort(t, "kills and restarts redis-server")
	srv := redistest.Start(t)
	// go-redis's defaults: stale pooled connections are retried after the restart.
	a := newTestApp(t, newRedisStore(t, srv.Client(t), session.RedisOptions{}), session.Options{})
	var clients []*client
	for _, u := range []string{"ann", "ben", "cat", "dan", "eve"} {
		c := a.client(t)
		c.get("/login?u=" + u)
		c.body("/set?k=v&v=" + u)
		clients = append(clients, c)
	}
	srv.Kill()
	srv.Restart(t)
	for _, c := range clients {
		res := c.get("/get?k=v")
		if res.StatusCode != http.StatusOK || res.Header.Get("X-User") != "" || readBody(res) != "" {
			t.Errorf("after a restart without persistence: status %d, user %q; want 200 and anonymous", res.StatusCode, res.Header.Get("X-User"))
		}
	}
}

// A persistence rollback (an RDB or AOF older than a logout) is emulated by
// DUMP before the logout and RESTORE after it, of the session's hash alone.
func TestRedisPersistenceRollbackOfASessionKey(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	a := newTestApp(t, newRedisStore(t, srv.Client(t), session.RedisOptions{}), session.Options{})
	ctx := context.Background()

	rollback := func(t *testing.T, end func(c *client)) (user string) {
		t.Helper()
		c := a.client(t)
		c.get("/login?u=rita")
		cookie := c.cookie
		keys, err := admin.Keys(ctx, "session:{u*}:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		dumps := map[string]string{}
		for _, k := range keys {
			if strings.HasSuffix(k, ":gen") || strings.HasSuffix(k, ":idx") {
				continue
			}
			dumps[k] = admin.Dump(ctx, k).Val()
		}
		end(c)
		for k, d := range dumps {
			if err := admin.RestoreReplace(ctx, k, time.Hour, d).Err(); err != nil {
				t.Fatal(err)
			}
		}
		again := a.client(t)
		again.cookie = cookie
		return again.get("/get").Header.Get("X-User")
	}

	t.Run("after RevokeAll the restored session is refused: the generation moved on", func(t *testing.T) {
		if user := rollback(t, func(*client) {
			if _, err := a.m.RevokeAll(ctx, "rita"); err != nil {
				t.Fatal(err)
			}
		}); user != "" {
			t.Errorf("a session restored after RevokeAll is live again (user %q)", user)
		}
	})
	t.Run("after Logout the restored session is live again, as README documents", func(t *testing.T) {
		if user := rollback(t, func(c *client) { c.get("/logout") }); user != "rita" {
			t.Errorf("user %q: the documented behaviour changed; update README's note on persistence rollback", user)
		}
	})
}

func TestUnderPoolPressureAndLatencyEachResponseShowsOnlyItsOwnUser(t *testing.T) {
	skipIfShort(t, "a thousand requests over a slow fault proxy and a two-connection pool")
	srv := redistest.Start(t)
	proxy := newFaultProxy(t, srv.Addr)
	rc := redis.NewClient(&redis.Options{Addr: proxy.Addr(), PoolSize: 2})
	t.Cleanup(func() { rc.Close() })
	a := newTestApp(t, newRedisStore(t, rc, session.RedisOptions{}), session.Options{})

	const users, perUser = 200, 5
	clients := make([]*client, users)
	for i := range clients {
		u := "user" + strconv.Itoa(i)
		clients[i] = a.client(t)
		clients[i].get("/login?u=" + u)
		clients[i].body("/set?k=v&v=" + u)
	}
	proxy.setDelay(time.Millisecond) // every chunk each way, on two shared connections

	var wrong, failed atomic.Int64
	var wg sync.WaitGroup
	for i, c := range clients {
		u := "user" + strconv.Itoa(i)
		for range perUser {
			wg.Go(func() {
				one := a.client(t)
				one.cookie = c.cookie
				res := one.get("/get?k=v")
				switch {
				case res.StatusCode != http.StatusOK:
					failed.Add(1)
				case res.Header.Get("X-User") != u || readBody(res) != u:
					wrong.Add(1)
				}
			})
		}
	}
	wg.Wait()
	if wrong.Load() != 0 || failed.Load() != 0 {
		t.Errorf("of %d requests, %d showed another user's identity or data and %d failed", users*perUser, wrong.Load(), failed.Load())
	}
}
