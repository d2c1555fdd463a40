package session_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/sessiontest"
	"github.com/sessionkit/session/sessiontest/redistest"
)

// hashTag is the part of a key Redis Cluster hashes: from the first '{' to
// the next '}', if that is not empty.
func hashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return key
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return key
	}
	return key[i+1 : i+1+j]
}

func TestAUsersKeysShareOneHashTagWhateverTheUserID(t *testing.T) {
	t.Parallel()
	fake := newFakeRedis(t)
	store := newRedisStore(t, fake.client, session.RedisOptions{})
	p := session.Policy{IdleTimeout: time.Hour, Lifetime: time.Hour, TouchInterval: time.Minute}
	users := []string{"a", "a*", "*", "?", "[a-z]", `\`, "a\nb", "a\r\nDEL x", "{x}", "a}b", "}{", " a", "A", "а", "\xff\xfe", strings.Repeat("x", session.MaxUserIDLength)}
	tags := map[string]string{}
	for _, u := range users {
		for range 2 {
			if _, err := store.Create(t.Context(), sessiontest.NewKey(u), session.Record{Info: session.Info{ID: "x"}}, p); err != nil {
				t.Fatalf("Create for %q: %v", u, err)
			}
		}
	}
	for _, key := range fake.m.Keys() {
		tag := hashTag(key)
		if strings.ContainsAny(tag, "{}*:?[]\\") {
			t.Errorf("key %q: tag %q holds a special character", key, tag)
		}
		tags[tag] = key
	}
	if len(tags) != len(users) {
		t.Errorf("%d hash tags for %d users: each user's keys should share exactly one", len(tags), len(users))
	}
}

func TestAnonymousSessionsSpreadOverHashTags(t *testing.T) {
	t.Parallel()
	fake := newFakeRedis(t)
	store := newRedisStore(t, fake.client, session.RedisOptions{})
	p := session.Policy{IdleTimeout: time.Hour, Lifetime: time.Hour, TouchInterval: time.Minute}
	for range 50 {
		if _, err := store.Create(t.Context(), sessiontest.NewKey(""), session.Record{Info: session.Info{ID: "x"}}, p); err != nil {
			t.Fatal(err)
		}
	}
	tags := map[string]bool{}
	for _, key := range fake.m.Keys() {
		tags[hashTag(key)] = true
	}
	if len(tags) < 45 {
		t.Errorf("50 anonymous sessions used only %d hash tags", len(tags))
	}
}

func TestRevokeAllEndsSessionsTheIndexLost(t *testing.T) {
	t.Parallel()
	fake := newFakeRedis(t)
	a := newTestApp(t, newRedisStore(t, fake.client, session.RedisOptions{}), session.Options{})
	var devices []*client
	for range 3 {
		c := a.client(t)
		c.get("/login?u=mo")
		devices = append(devices, c)
	}
	for _, key := range fake.m.Keys() {
		if strings.HasSuffix(key, ":idx") {
			fake.m.Del(key) // an operator's DEL, or eviction under allkeys-lru
		}
	}
	if _, err := a.m.RevokeAll(t.Context(), "mo"); err != nil {
		t.Fatal(err)
	}
	for i, c := range devices {
		if c.get("/get").Header.Get("X-User") != "" {
			t.Errorf("device %d is still logged in after RevokeAll", i)
		}
	}
}

func TestLosingTheGenerationKeyFailsClosed(t *testing.T) {
	t.Parallel()
	fake := newFakeRedis(t)
	a := newTestApp(t, newRedisStore(t, fake.client, session.RedisOptions{}), session.Options{})
	c := a.client(t)
	c.get("/login?u=nia")
	for _, key := range fake.m.Keys() {
		if strings.HasSuffix(key, ":gen") {
			fake.m.Del(key)
		}
	}
	if c.get("/get").Header.Get("X-User") != "" {
		t.Error("a session survived the loss of its user's generation; it should fail closed")
	}
	c.get("/login?u=nia")
	if c.get("/get").Header.Get("X-User") != "nia" {
		t.Error("logging in again does not work after the generation was lost")
	}
}

func TestACorruptHashIsNoSession(t *testing.T) {
	t.Parallel()
	for field, value := range map[string]string{"@x": "garbage", "@c": "", "@id": "", "@u": "someone else", "@g": "stale"} {
		t.Run(field, func(t *testing.T) {
			fake := newFakeRedis(t)
			a := newTestApp(t, newRedisStore(t, fake.client, session.RedisOptions{}), session.Options{})
			c := a.client(t)
			c.get("/login?u=oz")
			for _, key := range fake.m.Keys() {
				if !strings.HasSuffix(key, ":idx") && !strings.HasSuffix(key, ":gen") {
					if value == "" {
						fake.m.HDel(key, field)
					} else {
						fake.m.HSet(key, field, value)
					}
				}
			}
			res := c.get("/get")
			if res.StatusCode != 200 || res.Header.Get("X-User") != "" {
				t.Errorf("status %d, user %q: want 200 and anonymous", res.StatusCode, res.Header.Get("X-User"))
			}
			// A stale generation is an ordinary revocation; anything else
			// does not match its cookie and is a security event.
			wantLevel, wantMsg := `"level":"WARN"`, "does not match its stored session"
			if field == "@g" {
				wantLevel, wantMsg = `"level":"INFO"`, `"msg":"session ended"`
			}
			var found bool
			for _, line := range strings.Split(a.log.String(), "\n") {
				found = found || (strings.Contains(line, wantLevel) && strings.Contains(line, wantMsg))
			}
			if !found {
				t.Errorf("no %s line with %q in the log:\n%s", wantLevel, wantMsg, a.log.String())
			}
		})
	}
}

func TestAnEndedSessionIsLoggedAtInfoNotWarn(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			a := newTestApp(t, newStore(t), session.Options{})
			c := a.client(t)
			c.get("/login?u=ann")
			old := c.cookie
			c.get("/logout")
			replay := a.client(t)
			replay.cookie = old
			replay.get("/get")
			log := a.log.String()
			if !strings.Contains(log, `"level":"INFO","msg":"session ended"`) {
				t.Errorf("no Info line for the ended session:\n%s", log)
			}
			if strings.Contains(log, `"level":"WARN"`) {
				t.Errorf("an ordinary ending was logged at Warn:\n%s", log)
			}
		})
	}
}

func TestSubSecondTTLsKeepMillisecondPrecision(t *testing.T) {
	t.Parallel()
	fake := newFakeRedis(t)
	store := newRedisStore(t, fake.client, session.RedisOptions{})
	k := sessiontest.NewKey("")
	p := session.Policy{IdleTimeout: 1500 * time.Millisecond, Lifetime: time.Hour, TouchInterval: time.Minute}
	if _, err := store.Create(t.Context(), k, session.Record{Info: session.Info{ID: "x"}}, p); err != nil {
		t.Fatal(err)
	}
	for _, key := range fake.m.Keys() {
		if ttl := fake.m.TTL(key); ttl != 1500*time.Millisecond {
			t.Errorf("TTL of %q = %v, want 1.5s", key, ttl)
		}
	}
	fake.advance(1400 * time.Millisecond)
	if _, err := store.Load(t.Context(), k, session.Client{}, p); err != nil {
		t.Fatalf("load at 1.4s of a 1.5s idle timeout: %v", err)
	}
	fake.advance(1600 * time.Millisecond)
	if _, err := store.Load(t.Context(), k, session.Client{}, p); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("load 1.6s after the last use: err = %v, want ErrNotFound", err)
	}
}

func TestTwoInstancesSeeEachOthersRevocations(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rc := srv.Client(t)
	one := newTestApp(t, newRedisStore(t, rc, session.RedisOptions{}), session.Options{})
	two := newTestApp(t, newRedisStore(t, rc, session.RedisOptions{}), session.Options{})

	var devices []*client
	for i, agent := range []string{"phone", "laptop", "tablet", "desktop", "tv"} {
		app := one
		if i%2 == 1 {
			app = two
		}
		c := app.client(t)
		req := mustRequest(t, "/login?u=pat")
		req.Header.Set("User-Agent", agent)
		c.do(req)
		devices = append(devices, c)
	}
	bystander := two.client(t)
	bystander.get("/login?u=pat2")

	list, err := two.m.Sessions(context.Background(), "pat")
	if err != nil || len(list) != 5 {
		t.Fatalf("Sessions = %d entries, %v; want 5", len(list), err)
	}
	agents := map[string]bool{}
	for i, in := range list {
		agents[in.UserAgent] = true
		if i > 0 && in.Created.After(list[i-1].Created) {
			t.Errorf("Sessions is not newest first")
		}
	}
	if len(agents) != 5 {
		t.Errorf("user agents listed: %v", agents)
	}

	if err := one.m.Revoke(context.Background(), "pat", list[0].ID); err != nil {
		t.Fatal(err)
	}
	if devices[4].get("/get").Header.Get("X-User") != "" {
		t.Error("the revoked (newest) device is still logged in")
	}
	if devices[0].get("/get").Header.Get("X-User") != "pat" {
		t.Error("revoking one device logged out another")
	}

	res := devices[1].get("/others")
	if res.Header.Get("X-Count") != "3" {
		t.Errorf("LogoutOthers ended %s sessions, want 3", res.Header.Get("X-Count"))
	}
	for i, c := range devices {
		want := ""
		if i == 1 {
			want = "pat"
		}
		if got := c.get("/get").Header.Get("X-User"); got != want {
			t.Errorf("device %d: user %q, want %q", i, got, want)
		}
	}
	if n, err := two.m.RevokeAll(context.Background(), "pat"); err != nil || n != 1 {
		t.Errorf("RevokeAll = %d, %v; want 1", n, err)
	}
	if devices[1].get("/get").Header.Get("X-User") != "" {
		t.Error("the last device survived RevokeAll")
	}
	if bystander.get("/get").Header.Get("X-User") != "pat2" {
		t.Error("another user's session was touched")
	}
	assertEveryKeyHasTTL(t, rc)
}
