package session_test

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/sessiontest"
	"github.com/sessionkit/session/sessiontest/redistest"
)

// betweenSteps is a go-redis hook that, once armed, runs a function right
// after the first script (EVAL or EVALSHA) that Redis runs successfully,
// before anything that follows it reaches Redis, even within one pipeline.
// It puts another request's call exactly between two steps of a rotation,
// as a second app instance or a second cluster node can.
type betweenSteps struct {
	armed atomic.Pointer[func()]
	fired atomic.Bool
	// failNext, once set, makes the next script fail without reaching
	// Redis, as if the connection were lost before it was sent.
	failNext atomic.Bool
}

var errConnectionLost = errors.New("test: connection lost")

// refuse fails cmd if failNext is set and cmd is a script.
func (h *betweenSteps) refuse(cmd redis.Cmder) bool {
	if !isScript(cmd) || !h.failNext.CompareAndSwap(true, false) {
		return false
	}
	cmd.SetErr(errConnectionLost)
	return true
}

func (h *betweenSteps) arm(f func()) {
	h.fired.Store(false)
	h.armed.Store(&f)
}

func isScript(cmd redis.Cmder) bool {
	name := strings.ToLower(cmd.Name())
	return name == "eval" || name == "evalsha"
}

// after runs the armed function if cmd is a script that ran.
func (h *betweenSteps) after(cmd redis.Cmder) {
	if !isScript(cmd) || cmd.Err() != nil || h.armed.Load() == nil {
		return // NOSCRIPT and the like: the script did not run
	}
	if f := h.armed.Swap(nil); f != nil {
		h.fired.Store(true)
		(*f)()
	}
}

func (h *betweenSteps) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *betweenSteps) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.refuse(cmd) {
			return cmd.Err()
		}
		err := next(ctx, cmd)
		h.after(cmd)
		return err
	}
}

func (h *betweenSteps) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.armed.Load() == nil && !h.failNext.Load() {
			return next(ctx, cmds)
		}
		// One command at a time, so the armed call lands between them.
		var first error
		for _, cmd := range cmds {
			if h.refuse(cmd) {
				if first == nil {
					first = cmd.Err()
				}
				continue
			}
			if err := next(ctx, []redis.Cmder{cmd}); err != nil && first == nil {
				first = err
			}
			h.after(cmd)
		}
		return first
	}
}

// warmUp runs every script a rotation and a revocation use once, so that
// each is cached and the first EVALSHA of a test is not refused with
// NOSCRIPT (which would move betweenSteps's call to after a later step).
func warmUp(t *testing.T, store session.Store, p session.Policy) {
	t.Helper()
	ctx := t.Context()
	for _, user := range []string{"", "warm"} {
		from := sessiontest.NewKey(user)
		old, err := store.Create(ctx, from, session.Record{Info: session.Info{ID: "warm"}}, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []session.Rotation{
			{From: from, To: sessiontest.NewKey(user), Record: old, Renew: true},
			{From: from, To: sessiontest.NewKey("warm"), Record: old},
		} {
			if _, err := store.Rotate(ctx, r, p); err != nil && !errors.Is(err, session.ErrNotFound) {
				t.Fatal(err)
			}
			from = r.To
		}
		if err := store.Update(ctx, from, session.Change{Set: map[string]string{"a": "1"}}, p); err != nil {
			t.Fatal(err)
		}
		if err := store.Delete(ctx, from); err != nil {
			t.Fatal(err)
		}
	}
	_ = store.Revoke(ctx, "warm", "warm")
	if _, err := store.RevokeAll(ctx, "warm", session.Key{}); err != nil {
		t.Fatal(err)
	}
}

// rotationRedis names the Redis setups the rotation races run on.
func rotationRedis(t *testing.T) map[string]func(t *testing.T) (*redis.Client, session.RedisOptions) {
	t.Helper()
	// hz 100: a WAIT that no replica answers ends within ~10ms of its
	// timeout, not ~100ms.
	real := redistest.Start(t, "--hz", "100")
	realServer := func(t *testing.T) *redis.Client {
		c := real.Client(t)
		if err := c.FlushAll(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	return map[string]func(t *testing.T) (*redis.Client, session.RedisOptions){
		"miniredis": func(t *testing.T) (*redis.Client, session.RedisOptions) {
			return newFakeRedis(t).client, session.RedisOptions{}
		},
		"real redis": func(t *testing.T) (*redis.Client, session.RedisOptions) {
			return realServer(t), session.RedisOptions{}
		},
		// A lone server has no replica, so each WAIT times out with 0:
		// the steps of a rotation are two round trips apart, or one.
		"real redis with WaitReplicas": func(t *testing.T) (*redis.Client, session.RedisOptions) {
			return realServer(t), session.RedisOptions{WaitReplicas: 1, WaitTimeout: 5 * time.Millisecond}
		},
	}
}

// TestARevocationBetweenTheStepsOfARenewalEndsTheRenewedSession puts a
// Revoke or RevokeAll of the user right after the first script a Renew
// sends. Before rotation was one script, that was after the old session
// was taken over and before the new one was created: the revocation found
// nothing and the renewed session lived on with the revoked public ID.
func TestARevocationBetweenTheStepsOfARenewalEndsTheRenewedSession(t *testing.T) {
	t.Parallel()
	p := session.Policy{IdleTimeout: time.Hour, Lifetime: time.Hour, TouchInterval: time.Minute}
	revocations := map[string]func(ctx context.Context, s session.Store, user, id string) error{
		"revoke all": func(ctx context.Context, s session.Store, user, _ string) error {
			_, err := s.RevokeAll(ctx, user, session.Key{})
			return err
		},
		"revoke by public ID": func(ctx context.Context, s session.Store, user, id string) error {
			return s.Revoke(ctx, user, id)
		},
	}
	for setup, connect := range rotationRedis(t) {
		for name, revoke := range revocations {
			t.Run(setup+"/"+name, func(t *testing.T) {
				c, opts := connect(t)
				hook := &betweenSteps{}
				c.AddHook(hook)
				store := newRedisStore(t, c, opts)
				warmUp(t, store, p)
				ctx := t.Context()
				from := sessiontest.NewKey("ria")
				old, err := store.Create(ctx, from, session.Record{Info: session.Info{ID: "ria-1"}, Values: map[string]string{"a": "1"}}, p)
				if err != nil {
					t.Fatal(err)
				}
				var revokeErr error
				hook.arm(func() { revokeErr = revoke(context.Background(), store, "ria", old.ID) })
				to := sessiontest.NewKey("ria")
				_, rotateErr := store.Rotate(ctx, session.Rotation{From: from, To: to, Record: old, Renew: true}, p)
				if !hook.fired.Load() {
					t.Fatal("the revocation never ran")
				}
				t.Logf("Rotate: %v; revocation: %v", rotateErr, revokeErr)
				if revokeErr != nil {
					t.Errorf("the revocation did not find the session that was being renewed: %v", revokeErr)
				}
				if _, err := store.Load(ctx, to, session.Client{}, p); !errors.Is(err, session.ErrNotFound) {
					t.Errorf("the renewed session outlived the revocation: Load = %v, want ErrNotFound", err)
				}
				if _, err := store.Load(ctx, from, session.Client{}, p); !errors.Is(err, session.ErrNotFound) {
					t.Errorf("the old session outlived the revocation: Load = %v, want ErrNotFound", err)
				}
				if list, err := store.List(ctx, "ria"); err != nil || len(list) != 0 {
					t.Errorf("after the revocation ria has sessions %v (err %v)", list, err)
				}
			})
		}
	}
}

// TestALogoutBetweenTheStepsOfAnAnonymousRenewalEndsBoth: an anonymous
// session's old and new keys sit in different cluster slots, so its
// renewal takes two steps; a logout of the old token landing between them
// must leave neither token working.
func TestALogoutBetweenTheStepsOfAnAnonymousRenewalEndsBoth(t *testing.T) {
	p := session.Policy{IdleTimeout: time.Hour, Lifetime: time.Hour, TouchInterval: time.Minute}
	for setup, connect := range rotationRedis(t) {
		t.Run(setup, func(t *testing.T) {
			c, opts := connect(t)
			hook := &betweenSteps{}
			c.AddHook(hook)
			store := newRedisStore(t, c, opts)
			warmUp(t, store, p)
			ctx := t.Context()
			from := sessiontest.NewKey("")
			old, err := store.Create(ctx, from, session.Record{Info: session.Info{ID: "anon-1"}, Values: map[string]string{"a": "1"}}, p)
			if err != nil {
				t.Fatal(err)
			}
			hook.arm(func() {
				if err := store.Delete(context.Background(), from); err != nil {
					t.Errorf("Delete: %v", err)
				}
			})
			to := sessiontest.NewKey("")
			_, rotateErr := store.Rotate(ctx, session.Rotation{From: from, To: to, Record: old, Renew: true}, p)
			if !hook.fired.Load() {
				t.Fatal("the logout never ran")
			}
			t.Logf("Rotate: %v", rotateErr)
			if _, err := store.Load(ctx, to, session.Client{}, p); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("the renewed session outlived the logout of the old one: Load = %v, want ErrNotFound", err)
			}
			if rotateErr == nil {
				t.Error("the renewal of a logged-out session succeeded")
			}
		})
	}
}

// TestARenewalRacingRevokeAllLeavesNoLiveSession races the two, many
// times, without arranging the order.
func TestARenewalRacingRevokeAllLeavesNoLiveSession(t *testing.T) {
	t.Parallel()
	p := session.Policy{IdleTimeout: time.Hour, Lifetime: time.Hour, TouchInterval: time.Minute}
	for setup, connect := range rotationRedis(t) {
		t.Run(setup, func(t *testing.T) {
			c, opts := connect(t)
			store := newRedisStore(t, c, opts)
			ctx := t.Context()
			for i := range 50 {
				user := "sam" + strconv.Itoa(i)
				from := sessiontest.NewKey(user)
				old, err := store.Create(ctx, from, session.Record{Info: session.Info{ID: "id-" + user}}, p)
				if err != nil {
					t.Fatal(err)
				}
				to := sessiontest.NewKey(user)
				revoked := make(chan error)
				go func() {
					_, err := store.RevokeAll(ctx, user, session.Key{})
					revoked <- err
				}()
				_, rotateErr := store.Rotate(ctx, session.Rotation{From: from, To: to, Record: old, Renew: true}, p)
				if err := <-revoked; err != nil {
					t.Fatal(err)
				}
				if rotateErr != nil && !errors.Is(rotateErr, session.ErrNotFound) {
					t.Fatal(rotateErr)
				}
				if _, err := store.Load(ctx, to, session.Client{}, p); !errors.Is(err, session.ErrNotFound) {
					t.Fatalf("round %d: the renewed session outlived RevokeAll: Load = %v", i, err)
				}
				if list, err := store.List(ctx, user); err != nil || len(list) != 0 {
					t.Fatalf("round %d: after RevokeAll %s has %v (err %v)", i, user, list, err)
				}
			}
		})
	}
}

// exhaustMemory fills the server until Redis refuses writes for lack of
// memory, then lowers maxmemory below what it holds, so that no small
// write slips in at the limit.
func exhaustMemory(t *testing.T, admin *redis.Client) {
	t.Helper()
	fillUntil(t, admin, 64, func(err error) bool { return err != nil && strings.Contains(err.Error(), "OOM") })
	used := infoField(t, admin.Info(context.Background(), "memory").Val(), "used_memory")
	if err := admin.ConfigSet(context.Background(), "maxmemory", strconv.FormatInt(used/2, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Set(context.Background(), "probe", "x", time.Hour).Err(); err == nil || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("a small SET under OOM: %v, want Redis's OOM error", err)
	}
}

// TestALoginRefusedForLackOfMemoryKeepsTheAnonymousSession: before, the
// takeover of the old session (a DEL, which Redis allows under OOM) went
// first and the creation of the new one (refused) second, so a failed
// login destroyed the visitor's session and its values.
func TestALoginRefusedForLackOfMemoryKeepsTheAnonymousSession(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
	admin := srv.Client(t)
	store := newRedisStore(t, srv.Client(t), session.RedisOptions{})
	// The ErrorHandler shows the store's error, so the test can tell Redis's
	// OOM refusal from any other failure.
	showError := func(w http.ResponseWriter, r *http.Request, err error) {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	}
	a := newTestApp(t, store, session.Options{ErrorHandler: showError})
	visitor := a.client(t)
	visitor.body("/set?k=cart&v=apples")
	visitor.body("/set?k=note&v=hi")
	anonymous := visitor.cookie

	exhaustMemory(t, admin)

	res := visitor.get("/login?u=olga")
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode == http.StatusOK {
		t.Fatalf("a login under OOM succeeded (user %q)", res.Header.Get("X-User"))
	}
	if !strings.Contains(string(body), "OOM") {
		t.Errorf("the failed login answered %d %q; want Redis's OOM error to reach the ErrorHandler", res.StatusCode, body)
	}
	replay := a.client(t)
	replay.cookie = anonymous
	for k, want := range map[string]string{"cart": "apples", "note": "hi"} {
		res := replay.get("/get?k=" + k)
		if got := readBody(res); res.StatusCode != http.StatusOK || got != want || res.Header.Get("X-User") != "" {
			t.Errorf("after the failed login the anonymous session's %s: status %d, %q, user %q; want 200, %q, anonymous", k, res.StatusCode, got, res.Header.Get("X-User"), want)
		}
	}
	if list, err := store.List(context.Background(), "olga"); err != nil || len(list) != 0 {
		t.Errorf("the failed login left olga with sessions %v (err %v)", list, err)
	}
	assertEveryKeyHasTTL(t, admin)
}

// TestARotationOfAUsersSessionUnderOOMLeavesOneWholeSession: a renewal or
// re-login of a user's session is one script. Under OOM it either works
// or fails without a trace; never does it lose the session or its values.
func TestARotationOfAUsersSessionUnderOOMLeavesOneWholeSession(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
	admin := srv.Client(t)
	store := newRedisStore(t, srv.Client(t), session.RedisOptions{})
	ctx := context.Background()
	p := session.Policy{IdleTimeout: time.Hour, Lifetime: time.Hour, TouchInterval: time.Minute}
	want := map[string]string{"cart": "apples"}
	renewFrom := sessiontest.NewKey("pia")
	renewOld, err := store.Create(ctx, renewFrom, session.Record{Info: session.Info{ID: "pia-1"}, Values: want}, p)
	if err != nil {
		t.Fatal(err)
	}
	loginFrom := sessiontest.NewKey("pia")
	loginOld, err := store.Create(ctx, loginFrom, session.Record{Info: session.Info{ID: "pia-2"}, Values: want}, p)
	if err != nil {
		t.Fatal(err)
	}

	exhaustMemory(t, admin)

	for name, r := range map[string]session.Rotation{
		"renewal":  {From: renewFrom, To: sessiontest.NewKey("pia"), Record: renewOld, Renew: true},
		"re-login": {From: loginFrom, To: sessiontest.NewKey("pia"), Record: session.Record{Info: session.Info{ID: "pia-3"}, Values: loginOld.Values}},
	} {
		_, rotateErr := store.Rotate(ctx, r, p)
		t.Logf("%s under OOM: %v", name, rotateErr)
		live := r.To
		if rotateErr != nil {
			live = r.From
		}
		got, err := store.Load(ctx, live, session.Client{}, p)
		if err != nil || !maps.Equal(got.Values, want) {
			t.Errorf("%s under OOM (Rotate: %v): the surviving session loads %v, %v; want %v", name, rotateErr, got.Values, err, want)
		}
		dead := r.From
		if rotateErr != nil {
			dead = r.To
		}
		if _, err := store.Load(ctx, dead, session.Client{}, p); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("%s under OOM (Rotate: %v): both sessions exist", name, rotateErr)
		}
	}
	assertEveryKeyHasTTL(t, admin)
}

// TestATakeoverLostAfterTheCreateFailsSafe cuts the connection after the
// first step of a rotation across slots (the new session is created) and
// before the second (the old one is taken over). The old token must keep
// no more than it had: a login from an anonymous session may go on (its
// old token opens only the anonymous session it was); a renewal, and a
// login from another user's session, must fail.
func TestATakeoverLostAfterTheCreateFailsSafe(t *testing.T) {
	p := session.Policy{IdleTimeout: time.Hour, Lifetime: time.Hour, TouchInterval: time.Minute}
	for _, tc := range []struct {
		name      string
		from, to  string
		renew     bool
		succeeded bool
	}{
		{"a login from an anonymous session goes on", "", "nora", false, true},
		{"a renewal of an anonymous session fails", "", "", true, false},
		{"a login from another user's session fails", "otto", "nora", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeRedis(t)
			hook := &betweenSteps{}
			fake.client.AddHook(hook)
			store := newRedisStore(t, fake.client, session.RedisOptions{})
			warmUp(t, store, p)
			ctx := t.Context()
			from := sessiontest.NewKey(tc.from)
			old, err := store.Create(ctx, from, session.Record{Info: session.Info{ID: "old"}, Values: map[string]string{"a": "1"}}, p)
			if err != nil {
				t.Fatal(err)
			}
			hook.arm(func() { hook.failNext.Store(true) })
			to := sessiontest.NewKey(tc.to)
			rec := old
			if !tc.renew {
				rec = session.Record{Info: session.Info{ID: "new"}, Values: old.Values}
			}
			got, err := store.Rotate(ctx, session.Rotation{From: from, To: to, Record: rec, Renew: tc.renew}, p)
			if !hook.fired.Load() || hook.failNext.Load() {
				t.Fatal("the takeover was not cut off")
			}
			if tc.succeeded {
				if err != nil || !maps.Equal(got.Values, old.Values) {
					t.Fatalf("Rotate = %v, %v; want the new session and no error", got, err)
				}
			} else if err == nil || errors.Is(err, session.ErrNotFound) || !errors.Is(err, errConnectionLost) {
				t.Fatalf("Rotate: err = %v; want an error wrapping the lost connection", err)
			} else {
				t.Logf("Rotate: %v", err)
			}
			// The takeover never reached Redis: the old session is intact,
			// the new one complete (if the caller never learns its token, it
			// ends on its idle timeout).
			for _, k := range []session.Key{from, to} {
				if s, err := store.Load(ctx, k, session.Client{}, p); err != nil || !maps.Equal(s.Values, old.Values) {
					t.Errorf("Load(%v) = %v, %v; want the values %v", k, s.Values, err, old.Values)
				}
			}
		})
	}
}
