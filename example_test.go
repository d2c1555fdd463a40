package session_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/session"
)

// browser sends requests to h and carries the session cookie between
// them, as a browser would.
type browser struct {
	h      http.Handler
	cookie *http.Cookie
}

func (b *browser) get(path string) string {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if b.cookie != nil {
		req.AddCookie(b.cookie)
	}
	rec := httptest.NewRecorder()
	b.h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		b.cookie = c
		if c.MaxAge < 0 {
			b.cookie = nil
		}
	}
	return strings.TrimSpace(rec.Body.String())
}

// Sessions on Redis: New validates the options, Middleware wraps the
// handlers, Load gives each request its session.
func ExampleNew() {
	mr, err := miniredis.Run() // any Redis: redis.NewClient, NewClusterClient, NewFailoverClient
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()

	store, err := session.NewRedisStore(rdb, session.RedisOptions{})
	if err != nil {
		log.Fatal(err)
	}
	m, err := session.New(session.Options{
		Store:   store,
		Secrets: [][]byte{[]byte("a 32-byte or longer random secret!")},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("/visit", func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Load(r.Context())
		if err != nil {
			http.Error(w, "session store unavailable", http.StatusServiceUnavailable)
			return
		}
		n, err := s.Incr(r.Context(), "visits", 1)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "visit %d", n)
	})
	b := &browser{h: m.Middleware(mux)}
	fmt.Println(b.get("/visit"))
	fmt.Println(b.get("/visit"))
	// Output:
	// visit 1
	// visit 2
}

// Set and Get values; changes are saved before the response's first byte,
// and a visitor who stores nothing gets no cookie.
func ExampleManager_Middleware() {
	m, err := session.New(session.Options{Secrets: [][]byte{[]byte("a 32-byte or longer random secret!")}})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := m.Load(r.Context())
		if item := r.URL.Query().Get("add"); item != "" {
			cart, _ := s.Get("cart")
			s.Set("cart", strings.TrimPrefix(cart+","+item, ","))
		}
		cart, _ := s.Get("cart")
		fmt.Fprintf(w, "cart: %q", cart)
	}))
	b := &browser{h: h}
	fmt.Println(b.get("/"), "cookie:", b.cookie != nil)
	fmt.Println(b.get("/?add=apple"), "cookie:", b.cookie != nil)
	fmt.Println(b.get("/?add=pear"))
	// Output:
	// cart: "" cookie: false
	// cart: "apple" cookie: true
	// cart: "apple,pear"
}

// Login rotates the token (the old cookie stops working) and keeps the
// values; Logout deletes the session and clears the cookie.
func ExampleSession_Login() {
	m, err := session.New(session.Options{Secrets: [][]byte{[]byte("a 32-byte or longer random secret!")}})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	mux := http.NewServeMux()
	handle := func(pattern string, f func(context.Context, *session.Session) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			s, err := m.Load(r.Context())
			if err == nil {
				err = f(r.Context(), s)
			}
			if err != nil {
				http.Error(w, "try again", http.StatusInternalServerError)
				return
			}
			theme, _ := s.Get("theme")
			fmt.Fprintf(w, "user=%q theme=%q", s.UserID(), theme)
		})
	}
	handle("/theme", func(ctx context.Context, s *session.Session) error { s.Set("theme", "dark"); return nil })
	handle("/login", func(ctx context.Context, s *session.Session) error {
		// ... after checking the user's credentials:
		return s.Login(ctx, "alice")
	})
	handle("/logout", func(ctx context.Context, s *session.Session) error { return s.Logout(ctx) })
	handle("/", func(context.Context, *session.Session) error { return nil })

	b := &browser{h: m.Middleware(mux)}
	fmt.Println(b.get("/theme"))
	before := *b.cookie
	fmt.Println(b.get("/login"))
	fmt.Println("new token:", b.cookie.Value != before.Value)
	old := &browser{h: b.h, cookie: &before}
	fmt.Println("old cookie:", old.get("/"))
	fmt.Println(b.get("/logout"))
	fmt.Println("cookie kept:", b.cookie != nil)
	// Output:
	// user="" theme="dark"
	// user="alice" theme="dark"
	// new token: true
	// old cookie: user="" theme=""
	// user="" theme=""
	// cookie kept: false
}

// A "log out my other devices" button: every other session of the user
// ends at once, on every server; this one stays.
func ExampleSession_LogoutOthers() {
	m, err := session.New(session.Options{Secrets: [][]byte{[]byte("a 32-byte or longer random secret!")}})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		s, _ := m.Load(r.Context())
		if err := s.Login(r.Context(), "bob"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /devices/logout-others", func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Load(r.Context())
		if err != nil || s.UserID() == "" {
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		n, err := s.LogoutOthers(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "signed out %d other devices", n)
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		s, _ := m.Load(r.Context())
		fmt.Fprintf(w, "%q", s.UserID())
	})
	h := m.Middleware(mux)

	phone, laptop, tablet := &browser{h: h}, &browser{h: h}, &browser{h: h}
	for _, b := range []*browser{phone, laptop, tablet} {
		b.get("/login")
	}
	list, _ := m.Sessions(context.Background(), "bob")
	fmt.Println("bob's devices:", len(list))

	req := httptest.NewRequest(http.MethodPost, "/devices/logout-others", nil)
	req.AddCookie(laptop.cookie)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Body.String())
	fmt.Println("phone:", phone.get("/whoami"), "laptop:", laptop.get("/whoami"), "tablet:", tablet.get("/whoami"))
	// Output:
	// bob's devices: 3
	// signed out 2 other devices
	// phone: "" laptop: "bob" tablet: ""
}

// Typed values: a struct under one key is stored as JSON and replaced
// whole; a counter is kept with Incr, which is atomic in the store, so two
// requests adding at once both count.
func ExampleSession_SetJSON() {
	type cart struct {
		Items map[string]int `json:"items"`
	}
	m, err := session.New(session.Options{Secrets: [][]byte{[]byte("a 32-byte or longer random secret!")}})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Load(r.Context())
		if err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		var c cart
		if _, err := s.GetJSON("cart", &c); err != nil {
			c = cart{} // a value of another shape: start over
		}
		if item := r.URL.Query().Get("add"); item != "" {
			if c.Items == nil {
				c.Items = map[string]int{}
			}
			c.Items[item]++
			if err := s.SetJSON("cart", c); err != nil {
				http.Error(w, "try again", http.StatusInternalServerError)
				return
			}
		}
		visits, err := s.Incr(r.Context(), "visits", 1)
		if err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		s.SetBool("returning", visits > 1)
		fmt.Fprintf(w, "visit %d, cart %v", visits, c.Items)
	}))
	b := &browser{h: h}
	fmt.Println(b.get("/?add=apple"))
	fmt.Println(b.get("/?add=apple"))
	fmt.Println(b.get("/?add=pear"))
	// Output:
	// visit 1, cart map[apple:1]
	// visit 2, cart map[apple:2]
	// visit 3, cart map[apple:2 pear:1]
}

// Flash messages: Pop reads a value once and deletes it, saved like Delete.
func ExampleSession_Pop() {
	m, err := session.New(session.Options{Secrets: [][]byte{[]byte("a 32-byte or longer random secret!")}})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/save", func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Load(r.Context())
		if err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		s.Set("flash", "Settings saved")
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Load(r.Context())
		if err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		if msg, ok := s.Pop("flash"); ok {
			fmt.Fprintf(w, "[%s] ", msg)
		}
		fmt.Fprint(w, "home")
	})
	b := &browser{h: m.Middleware(mux)}
	b.get("/save")
	fmt.Println(b.get("/"))
	fmt.Println(b.get("/"))
	// Output:
	// [Settings saved] home
	// home
}

// An API for clients without cookies: with Options.Bearer the token comes in
// the Authorization header, and a new one goes back in Session-Token.
func Example_bearer() {
	api, err := session.New(session.Options{Secrets: [][]byte{[]byte("a 32-byte or longer random secret!")}, Bearer: true})
	if err != nil {
		log.Fatal(err)
	}
	defer api.Close()
	h := api.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := api.Load(r.Context())
		if err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/login" {
			if err := s.Login(r.Context(), "cli-user"); err != nil {
				http.Error(w, "login failed", http.StatusBadRequest)
				return
			}
		}
		fmt.Fprintf(w, "user=%q", s.UserID())
	}))
	call := func(path, token string) (body, newToken string) {
		req := httptest.NewRequest(http.MethodPost, path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Body.String(), rec.Header().Get(session.TokenHeader)
	}
	body, token := call("/login", "")
	fmt.Println(body, "token issued:", token != "")
	body, _ = call("/me", token)
	fmt.Println(body)
	// Output:
	// user="cli-user" token issued: true
	// user="cli-user"
}

// Remember me: a login with LoginOptions{Remember: true} gets a cookie
// that outlives the browser and the longer RememberLifetime, while other
// logins keep browser-session cookies (Cookie.SessionOnly) and Lifetime.
func ExampleSession_LoginWith() {
	m, err := session.New(session.Options{
		Secrets:          [][]byte{[]byte("a 32-byte or longer random secret!")},
		Cookie:           session.CookieOptions{SessionOnly: true},
		Lifetime:         12 * time.Hour,
		RememberLifetime: 30 * 24 * time.Hour,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Load(r.Context())
		if err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		remember := r.URL.Query().Get("remember") == "on"
		if err := s.LoginWith(r.Context(), "alice", session.LoginOptions{Remember: remember}); err != nil {
			http.Error(w, "cannot sign in", http.StatusBadRequest)
		}
	}))
	for _, path := range []string{"/login", "/login?remember=on"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, nil))
		c := rec.Result().Cookies()[0]
		fmt.Printf("%s: Max-Age %s\n", path, time.Duration(c.MaxAge)*time.Second)
	}
	list, _ := m.Sessions(context.Background(), "alice")
	for _, in := range list {
		fmt.Println("remembered:", in.Remembered, "lifetime:", in.Expires.Sub(in.Created))
	}
	// Output:
	// /login: Max-Age 0s
	// /login?remember=on: Max-Age 720h0m0s
	// remembered: true lifetime: 720h0m0s
	// remembered: false lifetime: 12h0m0s
}
