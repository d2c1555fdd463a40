// Package sessiontest checks that a session.Store keeps the contract written
// in the Store interface's doc comments. Package redistest, below it, starts
// real Redis servers for tests that need one.
//
//	func TestMyStore(t *testing.T) {
//		sessiontest.RunStoreTests(t, sessiontest.Harness{
//			New:     func(t *testing.T) session.Store { return newMyStore(t) },
//			Advance: func(t *testing.T, d time.Duration) { time.Sleep(d) },
//			Unit:    50 * time.Millisecond,
//		})
//	}
package sessiontest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sessionkit/session"
)

// Harness tells RunStoreTests how to make a store and move its clock. New
// and Advance are required, so the zero value is not usable; every other
// field's zero value means its default.
type Harness struct {
	// New returns an empty store for one test. Required.
	New func(t *testing.T) session.Store
	// Advance moves the store's clock forward by d. Required.
	Advance func(t *testing.T, d time.Duration)
	// Run runs one test body; nil means f(t). A store on fake time wraps
	// the body here (synctest.Test), so New and Advance run inside it.
	Run func(t *testing.T, f func(t *testing.T))
	// Unit scales every duration in the tests: the idle timeout is 10
	// units, the lifetime 30, the touch interval 2. Default 1s; a store on
	// real time wants it small.
	Unit time.Duration
}

// NewKey returns a key with a fresh, well-formed hash, as the Manager makes.
func NewKey(userID string) session.Key {
	var b [32]byte
	_, _ = rand.Read(b[:])
	sum := sha256.Sum256(b[:])
	return session.Key{UserID: userID, Hash: base64.RawURLEncoding.EncodeToString(sum[:])}
}

// RunStoreTests runs the conformance suite against the store h makes.
func RunStoreTests(t *testing.T, h Harness) {
	if h.New == nil || h.Advance == nil {
		t.Fatal("sessiontest: Harness needs New and Advance")
	}
	if h.Run == nil {
		h.Run = func(t *testing.T, f func(t *testing.T)) { f(t) }
	}
	if h.Unit == 0 {
		h.Unit = time.Second
	}
	for _, tc := range storeTests {
		t.Run(tc.name, func(t *testing.T) {
			h.Run(t, func(t *testing.T) {
				u := h.Unit
				e := &env{
					t:     t,
					store: h.New(t),
					ctx:   context.Background(),
					unit:  u,
					p:     session.Policy{IdleTimeout: 10 * u, Lifetime: 30 * u, TouchInterval: 2 * u},
					wait:  func(d time.Duration) { h.Advance(t, d) },
				}
				tc.run(e)
			})
		})
	}
}

// env is what one conformance test works with.
type env struct {
	t     *testing.T
	store session.Store
	ctx   context.Context
	unit  time.Duration
	p     session.Policy
	wait  func(time.Duration)
}

func (e *env) create(k session.Key, values map[string]string) session.Record {
	e.t.Helper()
	rec, err := e.store.Create(e.ctx, k, session.Record{Info: session.Info{ID: "id-" + k.Hash[:8], UserAgent: "ua", IP: "192.0.2.1"}, Values: values}, e.p)
	if err != nil {
		e.t.Fatalf("Create: %v", err)
	}
	return rec
}

func (e *env) load(k session.Key) session.Record {
	e.t.Helper()
	rec, err := e.store.Load(e.ctx, k, session.Client{UserAgent: "ua", IP: "192.0.2.1"}, e.p)
	if err != nil {
		e.t.Fatalf("Load: %v", err)
	}
	return rec
}

func (e *env) mustBeGone(k session.Key) {
	e.t.Helper()
	if _, err := e.store.Load(e.ctx, k, session.Client{}, e.p); !errors.Is(err, session.ErrNotFound) {
		e.t.Fatalf("Load of an ended session: err = %v, want ErrNotFound", err)
	}
}

func (e *env) ids(userID string) []string {
	e.t.Helper()
	list, err := e.store.List(e.ctx, userID)
	if err != nil {
		e.t.Fatalf("List(%q): %v", userID, err)
	}
	var ids []string
	for _, in := range list {
		ids = append(ids, in.ID)
	}
	slices.Sort(ids)
	return ids
}

var storeTests = []struct {
	name string
	run  func(e *env)
}{
	{"a created session loads with its values and metadata", func(e *env) {
		k := NewKey("")
		created := e.create(k, map[string]string{"a": "1", "b": ""})
		got := e.load(k)
		if !maps.Equal(got.Values, map[string]string{"a": "1", "b": ""}) {
			e.t.Errorf("Values = %v", got.Values)
		}
		if got.ID != "id-"+k.Hash[:8] || got.UserID != "" || got.UserAgent != "ua" || got.IP != "192.0.2.1" {
			e.t.Errorf("metadata = %+v", got)
		}
		if got.Created.IsZero() || !got.Created.Equal(created.Created) {
			e.t.Errorf("Created = %v, Create said %v", got.Created, created.Created)
		}
		if d := got.Expires.Sub(got.Created); d != e.p.Lifetime {
			e.t.Errorf("Expires - Created = %v, want the lifetime %v", d, e.p.Lifetime)
		}
	}},
	{"a record passed in or returned is the caller's: changing it changes nothing stored", func(e *env) {
		k := NewKey("")
		values := map[string]string{"a": "1"}
		created := e.create(k, values)
		values["a"], created.Values["a"] = "changed by the caller", "changed by the caller"
		loaded := e.load(k)
		loaded.Values["a"], loaded.Values["b"] = "changed by the caller", "added by the caller"
		if got := e.load(k).Values; !maps.Equal(got, map[string]string{"a": "1"}) {
			e.t.Fatalf("after the caller changed the maps it passed and got: %v, want the stored a=1", got)
		}
	}},
	{"values with reserved-looking names are kept apart from metadata", func(e *env) {
		k := NewKey("u1")
		vals := map[string]string{"@id": "x", "@u": "other", "@x": "0", "@g": "", "v:a": "y", "": "empty name"}
		e.create(k, vals)
		got := e.load(k)
		if !maps.Equal(got.Values, vals) || got.UserID != "u1" || got.ID != "id-"+k.Hash[:8] {
			e.t.Errorf("got %+v", got)
		}
	}},
	{"a session restored with its times keeps them, and creating over a live session fails", func(e *env) {
		k := NewKey("rita")
		created := time.Now().Add(-5 * e.unit).Truncate(time.Millisecond)
		expires := created.Add(e.p.Lifetime)
		rec, err := e.store.Create(e.ctx, k, session.Record{Info: session.Info{ID: "r1", Created: created, Expires: expires}, Values: map[string]string{"a": "1"}}, e.p)
		if err != nil {
			e.t.Fatal(err)
		}
		got := e.load(k)
		if !got.Created.Equal(created) || !got.Expires.Equal(expires) || !rec.Expires.Equal(expires) {
			e.t.Errorf("restored Created %v Expires %v; want %v %v", got.Created, got.Expires, created, expires)
		}
		if _, err := e.store.Create(e.ctx, k, session.Record{Info: session.Info{ID: "r2"}}, e.p); !errors.Is(err, session.ErrSessionExists) {
			e.t.Errorf("creating over a live session: err = %v, want ErrSessionExists", err)
		}
		if got := e.load(k); got.ID != "r1" || got.Values["a"] != "1" {
			e.t.Errorf("a failed create changed the session: %+v", got)
		}
	}},
	{"a restored session does not outlive a revocation of its ID or a later RevokeAll of its user", func(e *env) {
		restore := func(k session.Key, from session.Record, horizon time.Time) error {
			rec := session.Record{Info: session.Info{ID: from.ID, Created: from.Created, Expires: from.Expires}, Horizon: horizon}
			_, err := e.store.Create(e.ctx, k, rec, e.p)
			return err
		}
		revoked := e.create(NewKey("rex"), nil)
		if err := e.store.Revoke(e.ctx, "rex", revoked.ID); err != nil {
			e.t.Fatal(err)
		}
		if err := restore(NewKey("rex"), revoked, time.Time{}); !errors.Is(err, session.ErrNotFound) {
			e.t.Errorf("restoring a session whose public ID was revoked: err = %v, want ErrNotFound", err)
		}

		seen := e.create(NewKey("roy"), nil) // its Created is the store's time: the restorer's horizon
		e.wait(e.unit)
		if _, err := e.store.RevokeAll(e.ctx, "roy", session.Key{}); err != nil {
			e.t.Fatal(err)
		}
		if err := restore(NewKey("roy"), session.Record{Info: session.Info{ID: "made-in-outage", Created: seen.Created, Expires: seen.Expires}}, seen.Created); !errors.Is(err, session.ErrNotFound) {
			e.t.Errorf("restoring a session after a RevokeAll later than its horizon: err = %v, want ErrNotFound", err)
		}
		e.wait(e.unit)
		after := e.create(NewKey("roy"), nil)
		k := NewKey("roy")
		if err := restore(k, session.Record{Info: session.Info{ID: "made-later", Created: after.Created, Expires: after.Expires}}, after.Created); err != nil {
			e.t.Errorf("restoring a session whose horizon is past the RevokeAll: %v", err)
		}
		if got := e.load(k); got.ID != "made-later" {
			e.t.Errorf("restored session: %+v", got)
		}
	}},
	{"user IDs, values and client strings are kept byte for byte", func(e *env) {
		odd := "a\x00b\xff\xfe{x}:*\n\r\u00e9"
		for _, user := range []string{"", odd} {
			k := NewKey(user)
			vals := map[string]string{odd: odd, "empty": "", "nul": "\x00"}
			rec, err := e.store.Create(e.ctx, k, session.Record{Info: session.Info{ID: "id\x00\xff", UserAgent: odd, IP: odd}, Values: vals}, e.p)
			if err != nil {
				e.t.Fatalf("Create for user %q: %v", user, err)
			}
			got, err := e.store.Load(e.ctx, k, session.Client{UserAgent: odd, IP: odd}, e.p)
			if err != nil {
				e.t.Fatalf("Load for user %q: %v", user, err)
			}
			if got.ID != rec.ID || got.UserID != user || got.UserAgent != odd || got.IP != odd || !maps.Equal(got.Values, vals) {
				e.t.Errorf("user %q: loaded %q %q %q %q %q, want it as stored", user, got.ID, got.UserID, got.UserAgent, got.IP, got.Values)
			}
		}
	}},
	{"a remembered session keeps its mark and the idle timeout it was created with", func(e *env) {
		long := e.p
		long.IdleTimeout, long.Lifetime = 3*e.p.IdleTimeout, 3*e.p.Lifetime
		k := NewKey("rem")
		rec, err := e.store.Create(e.ctx, k, session.Record{Info: session.Info{ID: "remembered", Remembered: true}}, long)
		if err != nil {
			e.t.Fatal(err)
		}
		if !rec.Remembered || !e.load(k).Remembered {
			e.t.Error("a remembered session lost its mark")
		}
		if list, err := e.store.List(e.ctx, "rem"); err != nil || len(list) != 1 || !list[0].Remembered {
			e.t.Errorf("List = %+v, %v; want it marked Remembered", list, err)
		}
		// Idle for longer than the ordinary timeout, shorter than its own:
		// every later call passes the ordinary policy, yet it lives.
		e.wait(e.p.IdleTimeout + 2*e.unit)
		if !e.load(k).Remembered {
			e.t.Error("the remembered session lost its mark")
		}
		to := NewKey("rem")
		out, err := e.store.Rotate(e.ctx, session.Rotation{From: k, To: to, Record: rec, Renew: true}, long)
		if err != nil || !out.Remembered {
			e.t.Fatalf("renewing a remembered session: %+v, %v; want it still marked", out, err)
		}
		e.wait(e.p.IdleTimeout + 2*e.unit)
		if err := e.store.Update(e.ctx, to, session.Change{Set: map[string]string{"a": "1"}}, e.p); err != nil {
			e.t.Fatalf("the renewed remembered session ended after an ordinary idle timeout: %v", err)
		}
		e.wait(long.IdleTimeout + 2*e.unit)
		e.mustBeGone(to)
	}},
	{"an unknown or malformed key is not found", func(e *env) {
		for _, k := range []session.Key{NewKey(""), NewKey("u1"), {Hash: ""}, {Hash: "../x"}, {Hash: "*"}, {UserID: "u", Hash: "a:b"}} {
			if _, err := e.store.Load(e.ctx, k, session.Client{}, e.p); !errors.Is(err, session.ErrNotFound) {
				e.t.Errorf("Load(%q): err = %v, want ErrNotFound", k, err)
			}
			if err := e.store.Update(e.ctx, k, session.Change{Set: map[string]string{"a": "1"}}, e.p); !errors.Is(err, session.ErrNotFound) {
				e.t.Errorf("Update(%q): err = %v, want ErrNotFound", k, err)
			}
		}
	}},
	{"a session asked for under another user is not found", func(e *env) {
		k := NewKey("alice")
		e.create(k, map[string]string{"secret": "alice's"})
		for _, other := range []string{"", "bob", "alice ", "Alice"} {
			if _, err := e.store.Load(e.ctx, session.Key{UserID: other, Hash: k.Hash}, session.Client{}, e.p); !errors.Is(err, session.ErrNotFound) {
				e.t.Errorf("Load as %q: err = %v, want ErrNotFound", other, err)
			}
		}
		e.load(k)
	}},
	{"an invalid user ID is refused", func(e *env) {
		for _, id := range []string{string(make([]byte, session.MaxUserIDLength+1))} {
			if _, err := e.store.Create(e.ctx, NewKey(id), session.Record{}, e.p); !errors.Is(err, session.ErrInvalidUserID) {
				e.t.Errorf("Create for a %d-byte user: err = %v, want ErrInvalidUserID", len(id), err)
			}
		}
		if _, err := e.store.List(e.ctx, ""); !errors.Is(err, session.ErrInvalidUserID) {
			e.t.Errorf("List(\"\"): err = %v, want ErrInvalidUserID", err)
		}
		if _, err := e.store.RevokeAll(e.ctx, "", session.Key{}); !errors.Is(err, session.ErrInvalidUserID) {
			e.t.Errorf("RevokeAll(\"\"): err = %v, want ErrInvalidUserID", err)
		}
	}},
	{"an update writes only the named fields", func(e *env) {
		k := NewKey("")
		e.create(k, map[string]string{"keep": "1", "change": "1", "drop": "1"})
		err := e.store.Update(e.ctx, k, session.Change{Set: map[string]string{"change": "2", "new": "3"}, Delete: []string{"drop", "never-there"}}, e.p)
		if err != nil {
			e.t.Fatal(err)
		}
		want := map[string]string{"keep": "1", "change": "2", "new": "3"}
		if got := e.load(k).Values; !maps.Equal(got, want) {
			e.t.Errorf("Values = %v, want %v", got, want)
		}
	}},
	{"concurrent updates of different fields lose nothing", func(e *env) {
		k := NewKey("u1")
		e.create(k, nil)
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Go(func() {
				if err := e.store.Update(e.ctx, k, session.Change{Set: map[string]string{fmt.Sprint("f", i): fmt.Sprint(i)}}, e.p); err != nil {
					e.t.Error(err)
				}
			})
		}
		wg.Wait()
		if got := e.load(k).Values; len(got) != 100 {
			e.t.Errorf("%d fields survived, want 100", len(got))
		}
	}},
	{"a write after delete does not resurrect the session", func(e *env) {
		for _, user := range []string{"", "u1"} {
			k := NewKey(user)
			e.create(k, map[string]string{"a": "1"})
			if err := e.store.Delete(e.ctx, k); err != nil {
				e.t.Fatal(err)
			}
			if err := e.store.Update(e.ctx, k, session.Change{Set: map[string]string{"a": "2"}}, e.p); !errors.Is(err, session.ErrNotFound) {
				e.t.Errorf("Update after Delete: err = %v, want ErrNotFound", err)
			}
			if _, err := e.store.Incr(e.ctx, k, "n", 1, e.p); !errors.Is(err, session.ErrNotFound) {
				e.t.Errorf("Incr after Delete: err = %v, want ErrNotFound", err)
			}
			e.mustBeGone(k)
			if err := e.store.Delete(e.ctx, k); err != nil {
				e.t.Errorf("deleting twice: %v", err)
			}
		}
	}},
	{"incr is atomic under concurrency", func(e *env) {
		k := NewKey("")
		e.create(k, nil)
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				if _, err := e.store.Incr(e.ctx, k, "n", 2, e.p); err != nil {
					e.t.Error(err)
				}
			})
		}
		wg.Wait()
		n, err := e.store.Incr(e.ctx, k, "n", -1, e.p)
		if err != nil || n != 99 {
			e.t.Errorf("Incr = %d, %v; want 99", n, err)
		}
		if got := e.load(k).Values["n"]; got != "99" {
			e.t.Errorf("stored value %q, want 99", got)
		}
	}},
	{"incr reads integers as Redis does and refuses the rest", func(e *env) {
		const maxInt, minInt = "9223372036854775807", "-9223372036854775808"
		cases := []struct {
			value string // "absent" is left out of the session
			delta int64
			want  string // "" for ErrNotInteger
		}{
			{"absent", 5, "5"},
			{"absent", 0, "0"},
			{"absent", -5, "-5"},
			{"0", 0, "0"},
			{"0", -1, "-1"},
			{"7", 3, "10"},
			{"-7", 3, "-4"},
			{"-1", 1, "0"},
			{"1234567890123", -1234567890124, "-1"},
			{maxInt, 0, maxInt},
			{maxInt, -1, "9223372036854775806"},
			{"9223372036854775806", 1, maxInt},
			{minInt, 0, minInt},
			{minInt, 1, "-9223372036854775807"},
			{"-9223372036854775807", -1, minInt},
			{maxInt, 1, ""},
			{"1", 9223372036854775807, ""},
			{minInt, -1, ""},
			{"-2", -9223372036854775807, ""},
			{"-1", -9223372036854775807, minInt},
			{maxInt, -9223372036854775807 - 1, "-1"},
			{"9223372036854775808", 0, ""},
			{"-9223372036854775809", 0, ""},
			{"99999999999999999999", 0, ""},
			{"", 1, ""},
			{"05", 1, ""},
			{"007", 1, ""},
			{"00", 1, ""},
			{"-05", 1, ""},
			{"+5", 1, ""},
			{"+0", 1, ""},
			{"-0", 1, ""},
			{"-", 1, ""},
			{" 5", 1, ""},
			{"5 ", 1, ""},
			{"5\n", 1, ""},
			{"\t5", 1, ""},
			{"5.0", 1, ""},
			{"1e3", 1, ""},
			{"0x10", 1, ""},
			{"1_000", 1, ""},
			{"abc", 1, ""},
			{"\u0663", 1, ""}, // ARABIC-INDIC DIGIT THREE
		}
		for _, tc := range cases {
			values := map[string]string{"n": tc.value}
			if tc.value == "absent" {
				values = nil
			}
			k := NewKey("")
			e.create(k, values)
			n, err := e.store.Incr(e.ctx, k, "n", tc.delta, e.p)
			if tc.want == "" {
				if !errors.Is(err, session.ErrNotInteger) {
					e.t.Errorf("Incr(%q, %d) = %d, %v; want ErrNotInteger", tc.value, tc.delta, n, err)
				}
				if got := e.load(k).Values["n"]; got != tc.value {
					e.t.Errorf("a refused Incr(%q, %d) left the value %q", tc.value, tc.delta, got)
				}
				continue
			}
			if err != nil || fmt.Sprint(n) != tc.want {
				e.t.Errorf("Incr(%q, %d) = %d, %v; want %s", tc.value, tc.delta, n, err, tc.want)
			}
			if got := e.load(k).Values["n"]; got != tc.want {
				e.t.Errorf("after Incr(%q, %d) the stored value is %q, want %s", tc.value, tc.delta, got, tc.want)
			}
		}
	}},
	{"use within the idle timeout keeps a session alive", func(e *env) {
		k := NewKey("u1")
		e.create(k, nil)
		for range 3 { // 24 units: within the 30-unit lifetime
			e.wait(8 * e.unit)
			e.load(k)
		}
	}},
	{"a session idle past its timeout is gone and stays gone", func(e *env) {
		k := NewKey("u1")
		e.create(k, map[string]string{"a": "1"})
		e.wait(11 * e.unit)
		if err := e.store.Update(e.ctx, k, session.Change{Set: map[string]string{"a": "2"}}, e.p); !errors.Is(err, session.ErrNotFound) {
			e.t.Errorf("Update of an idle-expired session: err = %v, want ErrNotFound", err)
		}
		e.mustBeGone(k)
		if ids := e.ids("u1"); len(ids) != 0 {
			e.t.Errorf("List shows an expired session: %v", ids)
		}
	}},
	{"the absolute lifetime ends a session however active", func(e *env) {
		k := NewKey("")
		e.create(k, nil)
		for range 5 {
			e.wait(5 * e.unit)
			e.load(k)
		}
		e.wait(6 * e.unit) // 31 units after creation
		e.mustBeGone(k)
	}},
	{"last seen is written at most once per touch interval", func(e *env) {
		k := NewKey("")
		first := e.create(k, nil).LastSeen
		e.wait(e.unit)
		if got := e.load(k).LastSeen; !got.Equal(first) {
			e.t.Errorf("LastSeen moved within the touch interval: %v -> %v", first, got)
		}
		e.wait(2 * e.unit)
		rec, err := e.store.Load(e.ctx, k, session.Client{UserAgent: "new-ua", IP: "192.0.2.9"}, e.p)
		if err != nil {
			e.t.Fatal(err)
		}
		if !rec.LastSeen.After(first) || rec.UserAgent != "new-ua" || rec.IP != "192.0.2.9" {
			e.t.Errorf("after the touch interval: LastSeen %v (first %v), client %q %q", rec.LastSeen, first, rec.UserAgent, rec.IP)
		}
	}},
	{"login rotation moves the values to the user and ends the old session", func(e *env) {
		from := NewKey("")
		loaded := e.create(from, map[string]string{"cart": "3", "csrf": "x"})
		to := NewKey("alice")
		rec, err := e.store.Rotate(e.ctx, session.Rotation{
			From: from, To: to,
			Record: session.Record{Info: session.Info{ID: "new-id", UserAgent: "ua2"}, Values: loaded.Values},
			Change: session.Change{Set: map[string]string{"flash": "hi"}, Delete: []string{"csrf"}},
		}, e.p)
		if err != nil {
			e.t.Fatal(err)
		}
		want := map[string]string{"cart": "3", "flash": "hi"}
		if !maps.Equal(rec.Values, want) || rec.UserID != "alice" || rec.ID != "new-id" {
			e.t.Errorf("Rotate returned %+v", rec)
		}
		e.mustBeGone(from)
		if got := e.load(to); !maps.Equal(got.Values, want) || got.UserID != "alice" {
			e.t.Errorf("new session = %+v", got)
		}
		if ids := e.ids("alice"); !slices.Equal(ids, []string{"new-id"}) {
			e.t.Errorf("alice's sessions = %v", ids)
		}
	}},
	{"login rotation from an unstored session creates the new one", func(e *env) {
		to := NewKey("bob")
		_, err := e.store.Rotate(e.ctx, session.Rotation{To: to, Record: session.Record{Info: session.Info{ID: "b1"}},
			Change: session.Change{Set: map[string]string{"a": "1"}}}, e.p)
		if err != nil {
			e.t.Fatal(err)
		}
		if got := e.load(to).Values; got["a"] != "1" {
			e.t.Errorf("Values = %v", got)
		}
	}},
	{"renewal keeps the ID, creation time and absolute end", func(e *env) {
		for _, user := range []string{"alice", ""} {
			from := NewKey(user)
			old := e.create(from, map[string]string{"a": "1"})
			e.wait(3 * e.unit)
			to := NewKey(user)
			rec, err := e.store.Rotate(e.ctx, session.Rotation{From: from, To: to, Record: old, Renew: true}, e.p)
			if err != nil {
				e.t.Fatal(err)
			}
			got := e.load(to)
			if got.ID != old.ID || !got.Created.Equal(old.Created) || !got.Expires.Equal(old.Expires) || !rec.Expires.Equal(old.Expires) || rec.ID != old.ID {
				e.t.Errorf("user %q: renewed %+v, old %+v", user, got, old)
			}
			if !maps.Equal(got.Values, old.Values) || got.UserID != user {
				e.t.Errorf("user %q: renewed values %v of %q, want %v", user, got.Values, got.UserID, old.Values)
			}
			e.mustBeGone(from)
		}
	}},
	{"renewal of an ended session fails and creates nothing", func(e *env) {
		from := NewKey("alice")
		old := e.create(from, nil)
		if _, err := e.store.RevokeAll(e.ctx, "alice", session.Key{}); err != nil {
			e.t.Fatal(err)
		}
		to := NewKey("alice")
		if _, err := e.store.Rotate(e.ctx, session.Rotation{From: from, To: to, Record: old, Renew: true}, e.p); !errors.Is(err, session.ErrNotFound) {
			e.t.Fatalf("Rotate: err = %v, want ErrNotFound", err)
		}
		e.mustBeGone(to)
		e.mustBeGone(from)
	}},
	{"rotation carries over a change another request made after the load", func(e *env) {
		from := NewKey("")
		loaded := e.create(from, map[string]string{"a": "1", "b": "1"})
		if err := e.store.Update(e.ctx, from, session.Change{Set: map[string]string{"b": "2", "c": "3"}}, e.p); err != nil {
			e.t.Fatal(err)
		}
		to := NewKey("carol")
		if _, err := e.store.Rotate(e.ctx, session.Rotation{From: from, To: to, Record: session.Record{Info: session.Info{ID: "c1"}, Values: loaded.Values},
			Change: session.Change{Set: map[string]string{"a": "9"}}}, e.p); err != nil {
			e.t.Fatal(err)
		}
		want := map[string]string{"a": "9", "b": "2", "c": "3"}
		if got := e.load(to).Values; !maps.Equal(got, want) {
			e.t.Errorf("Values = %v, want %v", got, want)
		}
	}},
	{"a renewal carries over a change made after the load, with the request's change on top", func(e *env) {
		for _, user := range []string{"hana", ""} {
			from := NewKey(user)
			loaded := e.create(from, map[string]string{"a": "1", "b": "1", "c": "1"})
			// Another request writes between this one's load and its renewal.
			if err := e.store.Update(e.ctx, from, session.Change{Set: map[string]string{"b": "2", "d": "4"}, Delete: []string{"c"}}, e.p); err != nil {
				e.t.Fatal(err)
			}
			to := NewKey(user)
			rec, err := e.store.Rotate(e.ctx, session.Rotation{From: from, To: to, Record: loaded, Renew: true,
				Change: session.Change{Set: map[string]string{"a": "9"}, Delete: []string{"d"}}}, e.p)
			if err != nil {
				e.t.Fatal(err)
			}
			want := map[string]string{"a": "9", "b": "2"}
			if got := e.load(to).Values; !maps.Equal(got, want) || !maps.Equal(rec.Values, want) {
				e.t.Errorf("user %q: stored values %v, returned %v; want %v", user, got, rec.Values, want)
			}
			e.mustBeGone(from)
		}
	}},
	{"a new login of the same user starts a new ID and lifetime with the current values", func(e *env) {
		from := NewKey("ivan")
		loaded := e.create(from, map[string]string{"a": "1"})
		if err := e.store.Update(e.ctx, from, session.Change{Set: map[string]string{"b": "2"}}, e.p); err != nil {
			e.t.Fatal(err)
		}
		e.wait(3 * e.unit)
		to := NewKey("ivan")
		rec, err := e.store.Rotate(e.ctx, session.Rotation{From: from, To: to,
			Record: session.Record{Info: session.Info{ID: "ivan-2", UserAgent: "ua"}, Values: loaded.Values},
			Change: session.Change{Set: map[string]string{"c": "3"}}}, e.p)
		if err != nil {
			e.t.Fatal(err)
		}
		got := e.load(to)
		want := map[string]string{"a": "1", "b": "2", "c": "3"}
		if got.ID != "ivan-2" || rec.ID != "ivan-2" || !maps.Equal(got.Values, want) || !maps.Equal(rec.Values, want) {
			e.t.Errorf("new login: stored %+v, returned %+v; want ID ivan-2 and values %v", got, rec, want)
		}
		if !got.Created.After(loaded.Created) || got.Expires.Sub(got.Created) != e.p.Lifetime {
			e.t.Errorf("new login: Created %v (old %v), Expires %v; want a new lifetime", got.Created, loaded.Created, got.Expires)
		}
		e.mustBeGone(from)
		if ids := e.ids("ivan"); !slices.Equal(ids, []string{"ivan-2"}) {
			e.t.Errorf("ivan's sessions = %v", ids)
		}
	}},
	{"a refused rotation leaves the old session as it was", func(e *env) {
		// The new key is taken, so every store must refuse; what it may not
		// do is end the old session on the way.
		for _, tc := range []struct {
			name     string
			from, to string
			renew    bool
		}{
			{"login from an anonymous session", "", "jo", false},
			{"login from another user's session", "kai", "jo", false},
			{"new login of the same user", "jo", "jo", false},
			{"renewal of a user's session", "jo", "jo", true},
			{"renewal of an anonymous session", "", "", true},
		} {
			from, to := NewKey(tc.from), NewKey(tc.to)
			old := e.create(from, map[string]string{"a": "1"})
			taken := e.create(to, map[string]string{"other": "1"})
			_, err := e.store.Rotate(e.ctx, session.Rotation{From: from, To: to, Renew: tc.renew,
				Record: session.Record{Info: session.Info{ID: "new-" + tc.name}, Values: old.Values},
				Change: session.Change{Set: map[string]string{"b": "2"}}}, e.p)
			if err == nil {
				e.t.Errorf("%s onto a taken key succeeded", tc.name)
				continue
			}
			client := session.Client{UserAgent: "ua", IP: "192.0.2.1"}
			if got, lerr := e.store.Load(e.ctx, from, client, e.p); lerr != nil || got.ID != old.ID || !maps.Equal(got.Values, old.Values) {
				e.t.Errorf("%s refused (%v): the old session loads %q %v, %v; want %q %v", tc.name, err, got.ID, got.Values, lerr, old.ID, old.Values)
			}
			if got, lerr := e.store.Load(e.ctx, to, client, e.p); lerr != nil || got.ID != taken.ID || !maps.Equal(got.Values, taken.Values) {
				e.t.Errorf("%s refused (%v): the taken session loads %q %v, %v; want %q %v", tc.name, err, got.ID, got.Values, lerr, taken.ID, taken.Values)
			}
			for _, k := range []session.Key{from, to} {
				if err := e.store.Delete(e.ctx, k); err != nil {
					e.t.Fatal(err)
				}
			}
		}
	}},
	{"renewal after a revocation by public ID fails and creates nothing", func(e *env) {
		from := NewKey("lena")
		old := e.create(from, map[string]string{"a": "1"})
		if err := e.store.Revoke(e.ctx, "lena", old.ID); err != nil {
			e.t.Fatal(err)
		}
		to := NewKey("lena")
		if _, err := e.store.Rotate(e.ctx, session.Rotation{From: from, To: to, Record: old, Renew: true}, e.p); !errors.Is(err, session.ErrNotFound) {
			e.t.Fatalf("Rotate: err = %v, want ErrNotFound", err)
		}
		e.mustBeGone(to)
		if ids := e.ids("lena"); len(ids) != 0 {
			e.t.Errorf("lena's sessions = %v", ids)
		}
	}},
	{"renewal of a deleted anonymous session fails and creates nothing", func(e *env) {
		from := NewKey("")
		old := e.create(from, map[string]string{"a": "1"})
		if err := e.store.Delete(e.ctx, from); err != nil {
			e.t.Fatal(err)
		}
		to := NewKey("")
		if _, err := e.store.Rotate(e.ctx, session.Rotation{From: from, To: to, Record: old, Renew: true}, e.p); !errors.Is(err, session.ErrNotFound) {
			e.t.Fatalf("Rotate: err = %v, want ErrNotFound", err)
		}
		e.mustBeGone(to)
	}},
	{"a renewal racing a revocation of its user never outlives it", func(e *env) {
		// Whichever runs first, nothing of the user may be live afterwards:
		// a revocation before the renewal makes it fail, one after ends the
		// renewed session. And as the session is live throughout, under one
		// token or the other, a revocation by its public ID finds it.
		for i := range 20 {
			user := fmt.Sprint("mia", i)
			from := NewKey(user)
			old := e.create(from, map[string]string{"a": "1"})
			to := NewKey(user)
			byID := i%2 == 1
			revoked := make(chan error, 1)
			go func() {
				if byID {
					revoked <- e.store.Revoke(e.ctx, user, old.ID)
					return
				}
				_, err := e.store.RevokeAll(e.ctx, user, session.Key{})
				revoked <- err
			}()
			_, rotateErr := e.store.Rotate(e.ctx, session.Rotation{From: from, To: to, Record: old, Renew: true}, e.p)
			revokeErr := <-revoked
			if rotateErr != nil && !errors.Is(rotateErr, session.ErrNotFound) {
				e.t.Fatalf("round %d: Rotate: %v", i, rotateErr)
			}
			if revokeErr != nil {
				e.t.Fatalf("round %d (by ID: %v): the revocation missed the session being renewed: %v (Rotate: %v)", i, byID, revokeErr, rotateErr)
			}
			for _, k := range []session.Key{from, to} {
				if _, err := e.store.Load(e.ctx, k, session.Client{}, e.p); !errors.Is(err, session.ErrNotFound) {
					e.t.Fatalf("round %d (by ID: %v): a session outlived the revocation (Rotate: %v): Load = %v", i, byID, rotateErr, err)
				}
			}
			if ids := e.ids(user); len(ids) != 0 {
				e.t.Fatalf("round %d (by ID: %v): after the revocation %s has %v", i, byID, user, ids)
			}
		}
	}},
	{"a rotation within a user keeps the cap on the user's sessions", func(e *env) {
		keys := []session.Key{NewKey("pat"), NewKey("pat"), NewKey("pat")}
		var first session.Record
		for i, k := range keys {
			rec := e.create(k, nil)
			if i == 0 {
				first = rec
			}
			e.wait(3 * e.unit) // past the touch interval, so last-seen times differ
		}
		e.load(keys[2])
		e.p.MaxSessionsPerUser = 2 // lowered: pat has one session too many
		to := NewKey("pat")
		if _, err := e.store.Rotate(e.ctx, session.Rotation{From: keys[0], To: to, Record: first, Renew: true}, e.p); err != nil {
			e.t.Fatal(err)
		}
		e.mustBeGone(keys[1]) // the least recently seen of the others
		e.load(keys[2])
		e.load(to)
		if ids := e.ids("pat"); len(ids) != 2 {
			e.t.Errorf("pat has %d sessions, want 2", len(ids))
		}
	}},
	{"list shows a user's live sessions and no one else's", func(e *env) {
		users := []string{"a", "a*", "ab", "a}b", "b", "{a}", "a:b", "a\nb", "A"}
		for _, u := range users {
			e.create(NewKey(u), nil)
			e.create(NewKey(u), nil)
		}
		for _, u := range users {
			list, err := e.store.List(e.ctx, u)
			if err != nil {
				e.t.Fatal(err)
			}
			if len(list) != 2 {
				e.t.Errorf("List(%q) has %d sessions, want 2", u, len(list))
			}
			for _, in := range list {
				if in.Created.IsZero() || in.LastSeen.IsZero() || in.Expires.IsZero() || in.UserAgent != "ua" || in.IP != "192.0.2.1" {
					e.t.Errorf("List(%q) entry %+v is incomplete", u, in)
				}
			}
		}
	}},
	{"revoke ends one session and leaves the others", func(e *env) {
		k1, k2 := NewKey("dave"), NewKey("dave")
		r1 := e.create(k1, nil)
		e.create(k2, nil)
		if err := e.store.Revoke(e.ctx, "dave", r1.ID); err != nil {
			e.t.Fatal(err)
		}
		e.mustBeGone(k1)
		e.load(k2)
		if err := e.store.Revoke(e.ctx, "dave", r1.ID); !errors.Is(err, session.ErrNotFound) {
			e.t.Errorf("revoking twice: err = %v, want ErrNotFound", err)
		}
		if err := e.store.Revoke(e.ctx, "eve", "id-"+k2.Hash[:8]); !errors.Is(err, session.ErrNotFound) {
			e.t.Errorf("revoking another user's session: err = %v, want ErrNotFound", err)
		}
		e.load(k2)
	}},
	{"revoke all ends every session of the user and only those", func(e *env) {
		mine := []session.Key{NewKey("a*"), NewKey("a*"), NewKey("a*")}
		theirs := []session.Key{NewKey("a"), NewKey("ab"), NewKey("b"), NewKey("")}
		for _, k := range append(slices.Clone(mine), theirs...) {
			e.create(k, nil)
		}
		n, err := e.store.RevokeAll(e.ctx, "a*", mine[0])
		if err != nil || n != 2 {
			e.t.Fatalf("RevokeAll keeping one = %d, %v; want 2", n, err)
		}
		e.load(mine[0])
		e.mustBeGone(mine[1])
		e.mustBeGone(mine[2])
		for _, k := range theirs {
			e.load(k)
		}
		if err := e.store.Update(e.ctx, mine[0], session.Change{Set: map[string]string{"x": "1"}}, e.p); err != nil {
			e.t.Errorf("the kept session cannot be written: %v", err)
		}
		if n, err := e.store.RevokeAll(e.ctx, "a*", session.Key{}); err != nil || n != 1 {
			e.t.Errorf("RevokeAll = %d, %v; want 1", n, err)
		}
		e.mustBeGone(mine[0])
		for _, k := range theirs {
			e.load(k)
		}
	}},
	{"a write racing a revoke all does not resurrect the session", func(e *env) {
		k := NewKey("frank")
		e.create(k, nil)
		if _, err := e.store.RevokeAll(e.ctx, "frank", session.Key{}); err != nil {
			e.t.Fatal(err)
		}
		if err := e.store.Update(e.ctx, k, session.Change{Set: map[string]string{"late": "1"}}, e.p); !errors.Is(err, session.ErrNotFound) {
			e.t.Errorf("Update after RevokeAll: err = %v, want ErrNotFound", err)
		}
		e.mustBeGone(k)
		if ids := e.ids("frank"); len(ids) != 0 {
			e.t.Errorf("List after RevokeAll = %v", ids)
		}
	}},
	{"a login beyond the cap revokes the least recently seen session", func(e *env) {
		e.p.MaxSessionsPerUser = 3
		keys := []session.Key{NewKey("gina"), NewKey("gina"), NewKey("gina")}
		for _, k := range keys {
			e.create(k, nil)
			e.wait(3 * e.unit) // past the touch interval, so last-seen times differ
		}
		e.load(keys[0]) // now keys[1] is the least recently seen
		e.wait(e.unit)
		newest := NewKey("gina")
		e.create(newest, nil)
		e.mustBeGone(keys[1])
		e.load(keys[0])
		e.load(keys[2])
		e.load(newest)
		if ids := e.ids("gina"); len(ids) != 3 {
			e.t.Errorf("gina has %d sessions, want 3", len(ids))
		}
	}},
}
