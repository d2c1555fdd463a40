package session_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sessionkit/session"
)

type cart struct {
	Items map[string]int `json:"items"`
	Note  string         `json:"note"`
}

func TestTypedValuesRoundTripThroughTheStore(t *testing.T) {
	when := time.Date(2026, 12, 3, 8, 30, 0, 123456789, time.FixedZone("CET", 3600))
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			a := newTestApp(t, newStore(t), session.Options{})
			a.hook = func(w http.ResponseWriter, r *http.Request, s *session.Session) {
				switch r.URL.Path {
				case "/typed-set":
					s.SetInt("n", -42)
					s.SetBool("b", true)
					s.SetTime("t", when)
					if err := s.SetJSON("cart", cart{Items: map[string]int{"apple": 3}, Note: "ripe"}); err != nil {
						t.Error(err)
					}
					s.Set("flash", "saved")
				case "/typed-get":
					n, ok, err := s.GetInt("n")
					if n != -42 || !ok || err != nil {
						t.Errorf("GetInt = %d, %v, %v", n, ok, err)
					}
					b, ok, err := s.GetBool("b")
					if !b || !ok || err != nil {
						t.Errorf("GetBool = %v, %v, %v", b, ok, err)
					}
					got, ok, err := s.GetTime("t")
					if !got.Equal(when) || !ok || err != nil {
						t.Errorf("GetTime = %v, %v, %v; want %v", got, ok, err, when)
					}
					var c cart
					if ok, err := s.GetJSON("cart", &c); !ok || err != nil || c.Items["apple"] != 3 || c.Note != "ripe" {
						t.Errorf("GetJSON = %+v, %v, %v", c, ok, err)
					}
					if _, ok, err := s.GetInt("missing"); ok || err != nil {
						t.Errorf("GetInt of a missing key: ok %v, err %v", ok, err)
					}
					for _, key := range []string{"b", "t", "cart"} {
						if _, _, err := s.GetInt(key); !errors.Is(err, session.ErrWrongType) {
							t.Errorf("GetInt(%q): err = %v, want ErrWrongType", key, err)
						}
					}
					if _, _, err := s.GetBool("n"); !errors.Is(err, session.ErrWrongType) {
						t.Errorf("GetBool of an int: err = %v, want ErrWrongType", err)
					}
					if _, _, err := s.GetTime("n"); !errors.Is(err, session.ErrWrongType) {
						t.Errorf("GetTime of an int: err = %v, want ErrWrongType", err)
					}
					var wrong []string
					if _, err := s.GetJSON("cart", &wrong); !errors.Is(err, session.ErrWrongType) {
						t.Errorf("GetJSON into the wrong type: err = %v, want ErrWrongType", err)
					}
					if err := s.SetJSON("bad", func() {}); err == nil {
						t.Error("SetJSON of a func: no error")
					}
				}
			}
			c := a.client(t)
			c.get("/typed-set")
			c.get("/typed-get")
			if n := c.body("/incr?k=n"); n != "-41" {
				t.Errorf("Incr of a SetInt value gave %q, want -41", n)
			}
		})
	}
}

func TestPopReadsAFlashOnceAndCostsNoExtraRoundTrip(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			a := newTestApp(t, newStore(t), session.Options{})
			var popped []string
			a.hook = func(w http.ResponseWriter, r *http.Request, s *session.Session) {
				if r.URL.Path == "/pop" {
					v, ok := s.Pop("flash")
					popped = append(popped, fmt.Sprintf("%s %v", v, ok))
				}
			}
			c := a.client(t)
			c.get("/set?k=flash&v=Welcome")
			before := a.store.calls.Load()
			c.get("/pop")
			if n := a.store.calls.Load() - before; n != 2 {
				t.Errorf("a pop cost %d store calls, want 2 (load, then the delete with the other changes)", n)
			}
			c.get("/pop")
			if want := []string{"Welcome true", " false"}; fmt.Sprint(popped) != fmt.Sprint(want) {
				t.Errorf("popped %q, want %q", popped, want)
			}
		})
	}
}

func TestAResponseThatLoadedASessionVariesByCookie(t *testing.T) {
	a := newTestApp(t, session.NewMemoryStore(), session.Options{})
	c := a.client(t)
	c.get("/set?k=k&v=v")
	for target, want := range map[string]string{"/get?k=k": "Cookie", "/none": ""} {
		res := c.get(target)
		if got := res.Header.Get("Vary"); got != want {
			t.Errorf("%s: Vary %q, want %q", target, got, want)
		}
	}
	h := a.m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept-Encoding, cookie")
		if _, err := a.m.Load(r.Context()); err != nil {
			t.Error(err)
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if got := rec.Result().Header.Values("Vary"); len(got) != 1 {
		t.Errorf("Vary %q: Cookie was added twice", got)
	}
}

// All is a copy that never aliases what the session or the store holds: a
// Session shares the map Load returned until its first change, so a
// caller's change to All's map, or a Set after it, must not leak either way.
func TestAllIsACopyOfTheValuesAsTheyAreNow(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			a := newTestApp(t, newStore(t), session.Options{})
			var seen []string
			a.hook = func(w http.ResponseWriter, r *http.Request, s *session.Session) {
				switch r.URL.Path {
				case "/all-new": // a session with no values yet
					all := s.All()
					if all == nil || len(all) != 0 {
						t.Errorf("All of a new session = %#v, want an empty map", all)
					}
					all["written"] = "by the caller" // must not panic, must not leak
				case "/all-stored":
					before := s.All()
					before["a"] = "changed by the caller"
					s.Set("b", "2")
					s.Delete("c")
					after := s.All()
					if v, _ := s.Get("a"); v != "1" {
						t.Errorf("Get(a) = %q after the caller changed All's map, want 1", v)
					}
					seen = append(seen, fmt.Sprint(before), fmt.Sprint(after))
				}
			}
			c := a.client(t)
			c.get("/all-new")
			c.get("/set?k=a&v=1")
			c.get("/set?k=c&v=3")
			c.get("/all-stored")
			want := []string{"map[a:changed by the caller c:3]", "map[a:1 b:2]"}
			if fmt.Sprint(seen) != fmt.Sprint(want) {
				t.Errorf("All before and after Set and Delete = %q, want %q", seen, want)
			}
			if v := c.body("/get?k=written"); v != "" {
				t.Errorf("a value written into All's map was stored: %q", v)
			}
			for k, want := range map[string]string{"a": "1", "b": "2", "c": ""} {
				if v := c.body("/get?k=" + k); v != want {
					t.Errorf("stored %s = %q, want %q", k, v, want)
				}
			}
		})
	}
}
