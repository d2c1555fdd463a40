package session_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionkit/session"
)

func TestRequestsThatDoNotNeedTheSessionCostNothing(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			a := newTestApp(t, newStore(t), session.Options{})
			c := a.client(t)
			c.body("/set?k=a&v=1")
			before := a.store.calls.Load()
			for _, tc := range []struct {
				target string
				cookie bool
			}{
				{"/none", false}, // no cookie, handler never loads
				{"/none", true},  // valid cookie, handler never loads: not even decoded
				{"/load", false}, // anonymous visitor who reads and writes nothing
			} {
				c2 := a.client(t)
				if tc.cookie {
					c2.cookie = c.cookie
				}
				res := c2.get(tc.target)
				if got := res.Header.Values("Set-Cookie"); len(got) != 0 {
					t.Errorf("%s (cookie %v): Set-Cookie %q, want none", tc.target, tc.cookie, got)
				}
			}
			if n := a.store.calls.Load() - before; n != 0 {
				t.Errorf("%d store calls, want 0", n)
			}
		})
	}
}

func TestANewSessionGetsASecureCookie(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			a := newTestApp(t, newStore(t), session.Options{})
			c := a.client(t)
			res := c.get("/set?k=a&v=1")
			ck := sessionCookie(res, "__Host-session")
			if ck == nil {
				t.Fatalf("no session cookie in %q", res.Header.Values("Set-Cookie"))
			}
			raw := res.Header.Get("Set-Cookie")
			for _, want := range []string{"Path=/", "HttpOnly", "Secure", "SameSite=Lax", "Max-Age=43200"} {
				if !strings.Contains(raw, want) {
					t.Errorf("Set-Cookie %q lacks %s", raw, want)
				}
			}
			if strings.Contains(raw, "Domain") {
				t.Errorf("Set-Cookie %q has a Domain", raw)
			}
			if _, err := base64.URLEncoding.DecodeString(ck.Value); err != nil {
				t.Errorf("cookie value is not base64url: %v", err)
			}
			if got := res.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			if got := res.Header.Get("Vary"); got != "Cookie" {
				t.Errorf("Vary = %q, want Cookie", got)
			}
			if got := c.body("/get?k=a"); got != "1" {
				t.Errorf("next request reads %q, want 1", got)
			}
			if n := a.store.calls.Load(); n != 2 {
				t.Errorf("%d store calls for create + read, want 2", n)
			}
		})
	}
}

func TestInsecureDevelopmentCookie(t *testing.T) {
	t.Parallel()
	a := newTestApp(t, session.NewMemoryStore(), session.Options{Cookie: session.CookieOptions{Insecure: true, SameSite: http.SameSiteStrictMode, SessionOnly: true}})
	c := a.client(t)
	c.name = "session"
	res := c.get("/set?k=a&v=1")
	raw := res.Header.Get("Set-Cookie")
	if !strings.HasPrefix(raw, "session=") || strings.Contains(raw, "Secure") || strings.Contains(raw, "Max-Age") || !strings.Contains(raw, "SameSite=Strict") {
		t.Errorf("Set-Cookie = %q", raw)
	}
	if got := c.body("/get?k=a"); got != "1" {
		t.Errorf("read %q, want 1", got)
	}
}

// validCookie returns the value of a cookie for a stored session with a=1.
func validCookie(t *testing.T, a *testApp) string {
	c := a.client(t)
	c.body("/set?k=a&v=1")
	return c.cookie
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

func TestABadCookieIsCleared(t *testing.T) {
	t.Parallel()
	a := newTestApp(t, session.NewMemoryStore(), session.Options{})
	c := a.client(t)
	c.cookie = "forged-cookie-value-XYZ"
	res := c.get("/load")
	ck := sessionCookie(res, session.DefaultCookieName)
	if ck == nil || ck.MaxAge >= 0 || ck.Path != "/" {
		t.Fatalf("want an expiring cookie, got %q", res.Header.Values("Set-Cookie"))
	}
	log := a.log.String()
	if !strings.Contains(log, "session cookie rejected") || !strings.Contains(log, "cookie_hash") {
		t.Errorf("no security log line with a cookie hash for the forged cookie: %s", log)
	}
	if strings.Contains(log, "forged-cookie-value-XYZ") {
		t.Errorf("the cookie value reached the log")
	}
}

func TestSecretRotation(t *testing.T) {
	t.Parallel()
	store := session.NewMemoryStore()
	t.Cleanup(func() { store.Close() })
	oldSecret := []byte("the old secret, at least 32 bytes long")
	newSecret := []byte("the new secret, at least 32 bytes long")

	before := newTestApp(t, store, session.Options{Secrets: [][]byte{oldSecret}})
	c := before.client(t)
	c.body("/set?k=a&v=1")
	oldCookie := c.cookie

	rotated := newTestApp(t, store, session.Options{Secrets: [][]byte{newSecret, oldSecret}})
	c.a = rotated
	res := c.get("/get?k=a")
	if got := sessionCookie(res, session.DefaultCookieName); got == nil || got.Value == oldCookie {
		t.Fatalf("a cookie under the old secret was not re-issued: %q", res.Header.Values("Set-Cookie"))
	}
	if got := c.body("/get?k=a"); got != "1" {
		t.Errorf("re-issued cookie reads %q, want 1", got)
	}

	retired := newTestApp(t, store, session.Options{Secrets: [][]byte{newSecret}})
	c.a = retired
	if got := c.body("/get?k=a"); got != "1" {
		t.Errorf("cookie under the new secret reads %q after the old one was removed, want 1", got)
	}
	old := retired.client(t)
	old.cookie = oldCookie
	if got := old.body("/get?k=a"); got != "" {
		t.Errorf("a cookie under a removed secret reads %q, want anonymous", got)
	}
}

func TestLoginRotatesTheTokenAndKillsTheOldCookie(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			a := newTestApp(t, newStore(t), session.Options{})
			c := a.client(t)
			c.body("/set?k=cart&v=3")
			anonCookie := c.cookie
			anonID := c.get("/get").Header.Get("X-ID")

			res := c.get("/login?u=alice&k=cart")
			if res.Header.Get("X-User") != "alice" {
				t.Fatalf("X-User = %q after login", res.Header.Get("X-User"))
			}
			if c.cookie == anonCookie || c.cookie == "" {
				t.Fatal("login did not issue a new cookie")
			}
			if id := res.Header.Get("X-ID"); id == anonID || id == "" {
				t.Errorf("public ID %q did not change at login (was %q)", id, anonID)
			}
			if got := c.body("/get?k=cart"); got != "3" {
				t.Errorf("values after login: cart = %q, want 3", got)
			}
			attacker := a.client(t)
			attacker.cookie = anonCookie
			if res := attacker.get("/get?k=cart"); res.Header.Get("X-User") != "" {
				t.Errorf("the pre-login cookie still works")
			}
		})
	}
}

func TestRenewRotatesTheTokenAndKeepsTheSession(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			a := newTestApp(t, newStore(t), session.Options{})
			c := a.client(t)
			c.get("/login?u=bob")
			c.body("/set?k=role&v=user")
			before, id := c.cookie, c.get("/get").Header.Get("X-ID")
			res := c.get("/renew?k=role")
			if c.cookie == before || res.Header.Get("X-ID") != id || res.Header.Get("X-User") != "bob" {
				t.Errorf("renew: cookie changed %v, ID %q (was %q), user %q", c.cookie != before, res.Header.Get("X-ID"), id, res.Header.Get("X-User"))
			}
			if got := c.body("/get?k=role"); got != "user" {
				t.Errorf("role = %q after renew", got)
			}
			old := a.client(t)
			old.cookie = before
			if old.get("/get").Header.Get("X-User") != "" {
				t.Errorf("the cookie from before Renew still works")
			}
		})
	}
}

func TestLogoutDeletesTheSessionAndClearsTheCookie(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			a := newTestApp(t, newStore(t), session.Options{Cookie: session.CookieOptions{Name: "sid", Path: "/app", Domain: "example.com"}})
			c := a.client(t)
			c.name = "sid"
			c.get("/login?u=carol")
			loggedIn := c.cookie
			res := c.get("/logout")
			ck := sessionCookie(res, "sid")
			if ck == nil || ck.MaxAge >= 0 || ck.Path != "/app" || ck.Domain != "example.com" {
				t.Fatalf("logout cookie = %+v, want Max-Age=0 with the same name, path and domain", ck)
			}
			if res.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("logout response lacks Cache-Control: no-store")
			}
			back := a.client(t)
			back.name = "sid"
			back.cookie = loggedIn
			if back.get("/get").Header.Get("X-User") != "" {
				t.Errorf("the logged-out cookie still works (back button)")
			}
		})
	}
}

// stallAWrite sends a request with cookie that loads its session, holds it
// inside the handler while during runs, then lets it write ("late"), and
// returns its status.
func stallAWrite(t *testing.T, a *testApp, cookie string, during func()) int {
	t.Helper()
	loaded, resume := make(chan struct{}), make(chan struct{})
	a.hook = func(w http.ResponseWriter, r *http.Request, s *session.Session) {
		if r.URL.Query().Get("stall") != "" {
			close(loaded)
			<-resume
		}
	}
	defer func() { a.hook = nil }()
	done := make(chan int)
	go func() {
		slow := a.client(t)
		slow.cookie = cookie
		done <- slow.get("/set?k=late&v=stale&stall=1").StatusCode
	}()
	<-loaded
	during()
	close(resume)
	return <-done
}

func TestAWriteRacingARenewalLandsOnNeitherToken(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			a := newTestApp(t, newStore(t), session.Options{})
			c := a.client(t)
			c.get("/login?u=ria")
			oldCookie := c.cookie

			status := stallAWrite(t, a, oldCookie, func() { c.get("/renew") })

			if c.cookie == "" || c.cookie == oldCookie {
				t.Fatalf("Renew did not issue a new cookie")
			}
			if status >= 500 {
				t.Errorf("the late write answered %d", status)
			}
			if res := c.get("/get?k=late"); res.Header.Get("X-User") != "ria" || readBody(res) != "" {
				t.Errorf("the renewed session: user %q, late value present; want ria without it", res.Header.Get("X-User"))
			}
			replay := a.client(t)
			replay.cookie = oldCookie
			if res := replay.get("/get?k=late"); res.Header.Get("X-User") != "" {
				t.Errorf("the token from before the renewal works again after a late write")
			}
		})
	}
}

func TestAWriteRacingALogoutDoesNotResurrectTheSession(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			store := newStore(t)
			a := newTestApp(t, store, session.Options{})
			c := a.client(t)
			c.get("/login?u=dan")
			cookie := c.cookie

			stallAWrite(t, a, cookie, func() {
				other := a.client(t)
				other.cookie = cookie
				other.get("/logout")
			})

			list, err := store.List(context.Background(), "dan")
			if err != nil || len(list) != 0 {
				t.Errorf("after logout and a late write, dan has sessions %v (err %v)", list, err)
			}
			replay := a.client(t)
			replay.cookie = cookie
			if res := replay.get("/get?k=late"); res.Header.Get("X-User") != "" {
				t.Errorf("the logged-out session came back")
			}
			if !strings.Contains(a.log.String(), "session write refused") {
				t.Errorf("no log line for the refused write")
			}
		})
	}
}

func TestConcurrentRequestsWritingDifferentKeysLoseNothing(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			a := newTestApp(t, newStore(t), session.Options{})
			c := a.client(t)
			c.body("/set?k=start&v=1")
			var wg sync.WaitGroup
			for i := range 100 {
				wg.Go(func() {
					ci := a.client(t)
					ci.cookie = c.cookie
					ci.get(fmt.Sprintf("/set?k=k%d&v=%d", i, i))
				})
			}
			wg.Wait()
			for i := range 100 {
				if got := c.body(fmt.Sprintf("/get?k=k%d", i)); got != fmt.Sprint(i) {
					t.Errorf("k%d = %q, want %d", i, got, i)
				}
			}
		})
	}
}

func TestIncrIsAtomicAcrossRequests(t *testing.T) {
	t.Parallel()
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			a := newTestApp(t, newStore(t), session.Options{})
			c := a.client(t)
			if got := c.body("/incr?k=n"); got != "1" {
				t.Fatalf("first Incr on a new session = %q, want 1", got)
			}
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					ci := a.client(t)
					ci.cookie = c.cookie
					ci.get("/incr?k=n")
				})
			}
			wg.Wait()
			if got := c.body("/get?k=n"); got != "21" {
				t.Errorf("n = %q, want 21", got)
			}
			c.body("/set?k=s&v=text")
			if res := c.get("/incr?k=s"); res.StatusCode != http.StatusConflict {
				t.Errorf("Incr of text: status %d, want the handler's 409 for ErrNotInteger", res.StatusCode)
			}
		})
	}
}

func TestIncrOnANewSessionReadsIntegersAsTheStoresDo(t *testing.T) {
	t.Parallel()
	a := newTestApp(t, session.NewMemoryStore(), session.Options{})
	a.hook = func(w http.ResponseWriter, r *http.Request, s *session.Session) {
		s.Set("n", r.URL.Query().Get("v")) // before the session is stored
	}
	for v, want := range map[string]int{"7": http.StatusOK, "-7": http.StatusOK, "0": http.StatusOK,
		"": http.StatusConflict, "05": http.StatusConflict, "+5": http.StatusConflict, "-0": http.StatusConflict, " 5": http.StatusConflict} {
		if res := a.client(t).get("/incr?k=n&v=" + url.QueryEscape(v)); res.StatusCode != want {
			t.Errorf("Incr of %q on a new session: status %d, want %d", v, res.StatusCode, want)
		}
	}
}

func TestAPanickingHandlerSavesNothing(t *testing.T) {
	t.Parallel()
	a := newTestApp(t, session.NewMemoryStore(), session.Options{})
	c := a.client(t)
	c.body("/set?k=k&v=before")
	before := a.store.calls.Load()
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic did not reach the outer handler")
			}
		}()
		c.get("/panic")
	}()
	if n := a.store.calls.Load() - before; n != 1 { // the Load only
		t.Errorf("%d store calls, want just the load", n)
	}
	if got := c.body("/get?k=k"); got != "before" {
		t.Errorf("k = %q after a panic, want before", got)
	}
}

func TestA5xxResponseSavesNothing(t *testing.T) {
	t.Parallel()
	a := newTestApp(t, session.NewMemoryStore(), session.Options{})
	fresh := a.client(t)
	if res := fresh.get("/fail"); len(res.Header.Values("Set-Cookie")) != 0 {
		t.Errorf("a 500 set a cookie: %q", res.Header.Values("Set-Cookie"))
	}
	c := a.client(t)
	c.body("/set?k=k&v=before")
	c.get("/fail")
	if got := c.body("/get?k=k"); got != "before" {
		t.Errorf("k = %q after a 500, want before", got)
	}
}

func TestAStreamingHandlerThatFlushesIsSavedFirst(t *testing.T) {
	t.Parallel()
	a := newTestApp(t, session.NewMemoryStore(), session.Options{})
	srv := httptest.NewServer(a.h)
	t.Cleanup(srv.Close)
	res, err := srv.Client().Get(srv.URL + "/flush")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "first part second part" {
		t.Errorf("body = %q", body)
	}
	ck := sessionCookie(res, session.DefaultCookieName)
	if ck == nil {
		t.Fatal("the flushed response carries no session cookie")
	}
	c := a.client(t)
	c.cookie = ck.Value
	if got := c.body("/get?k=k"); got != "flushed" {
		t.Errorf("k = %q, want flushed", got)
	}
}

func TestTheWriterPassesHijackAndReadFromThrough(t *testing.T) {
	t.Parallel()
	store := session.NewMemoryStore()
	t.Cleanup(func() { store.Close() })
	m, err := session.New(session.Options{Store: store, Secrets: [][]byte{testSecret}})
	if err != nil {
		t.Fatal(err)
	}
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := m.Load(r.Context())
		if r.URL.Path == "/readfrom" {
			s.Set("k", "v")
			if _, ok := w.(io.ReaderFrom); !ok {
				t.Error("the writer is not an io.ReaderFrom")
			}
			io.Copy(w, strings.NewReader("copied"))
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		rw.Flush()
	}))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	for path, want := range map[string]string{"/readfrom": "copied", "/hijack": "hijacked"} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		conn.Close()
		if string(body) != want {
			t.Errorf("%s: body %q, want %q", path, body, want)
		}
		if path == "/readfrom" && sessionCookie(res, session.DefaultCookieName) == nil {
			t.Errorf("%s: no session cookie", path)
		}
	}
}

func TestAStoreErrorGoesToTheErrorHandler(t *testing.T) {
	t.Parallel()
	var handled error
	a := newTestApp(t, failingStore{session.NewMemoryStore()}, session.Options{
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			handled = err
			http.Error(w, "sorry", http.StatusServiceUnavailable)
		},
	})
	c := a.client(t)
	res := c.get("/set?k=a&v=1")
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusServiceUnavailable || !errors.Is(handled, errStoreDown) || string(body) != "sorry\n" {
		t.Errorf("status %d, body %q, handled %v", res.StatusCode, body, handled)
	}
}

func TestTheDefaultErrorHandlerAnswers500AndLogs(t *testing.T) {
	t.Parallel()
	a := newTestApp(t, failingStore{session.NewMemoryStore()}, session.Options{})
	res := a.client(t).get("/set?k=a&v=1")
	if res.StatusCode != http.StatusInternalServerError {
		t.Errorf("status %d, want 500", res.StatusCode)
	}
	if !strings.Contains(a.log.String(), errStoreDown.Error()) {
		t.Errorf("the error was not logged: %s", a.log)
	}
}

func TestLoadOutsideTheMiddlewareIsErrNoSession(t *testing.T) {
	t.Parallel()
	a := newTestApp(t, session.NewMemoryStore(), session.Options{})
	if _, err := a.m.Load(context.Background()); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("err = %v, want ErrNoSession", err)
	}
}

func TestChangesAfterTheHeadersAreSavedOrReported(t *testing.T) {
	t.Parallel()
	a := newTestApp(t, session.NewMemoryStore(), session.Options{})
	c := a.client(t)
	c.body("/set?k=a&v=1")
	var loginErr error
	a.hook = func(w http.ResponseWriter, r *http.Request, s *session.Session) {
		w.WriteHeader(http.StatusOK)
		s.Set("late", "saved")
		loginErr = s.Login(r.Context(), "zed")
	}
	c.get("/get")
	if !errors.Is(loginErr, session.ErrHeadersWritten) {
		t.Errorf("Login after the headers: err = %v, want ErrHeadersWritten", loginErr)
	}
	a.hook = nil
	if got := c.body("/get?k=late"); got != "saved" {
		t.Errorf("a stored session's late change: %q, want saved", got)
	}

	a.hook = func(w http.ResponseWriter, r *http.Request, s *session.Session) {
		w.WriteHeader(http.StatusOK)
		s.Set("late", "lost")
	}
	a.client(t).get("/get")
	if !strings.Contains(a.log.String(), "response headers already written") {
		t.Errorf("a new session's late change was dropped without a log line")
	}
}

func TestIdleAndAbsoluteExpiryThroughTheMiddleware(t *testing.T) {
	t.Parallel()
	synctestRun(t, func(t *testing.T) {
		store := session.NewMemoryStore()
		defer store.Close()
		checkIdleAndAbsoluteExpiry(t, store, time.Sleep)
	})
}

func TestRedisExpiryFollowsTheRedisClockNotTheApps(t *testing.T) {
	t.Parallel()
	for _, skew := range []time.Duration{-5 * time.Minute, 5 * time.Minute} {
		t.Run("Redis "+skew.String()+" from the app", func(t *testing.T) {
			clock := newFakeRedis(t)
			clock.now = clock.now.Add(skew)
			clock.m.SetTime(clock.now)
			// Only Redis's clock moves: expiry by the app's clock would never come.
			checkIdleAndAbsoluteExpiry(t, newRedisStore(t, clock.client, session.RedisOptions{}), clock.advance)
		})
	}
}

// checkIdleAndAbsoluteExpiry drives a session with a 10-minute idle timeout
// and a 1-hour lifetime through the middleware, moving the store's clock
// with advance: activity keeps it alive until its lifetime, and 11 idle
// minutes, or the lifetime, end it.
func checkIdleAndAbsoluteExpiry(t *testing.T, store session.Store, advance func(time.Duration)) {
	t.Helper()
	a := newTestApp(t, store, session.Options{IdleTimeout: 10 * time.Minute, Lifetime: time.Hour})
	c := a.client(t)
	c.get("/login?u=ivy")
	for range 5 {
		advance(9 * time.Minute)
		if c.get("/get").Header.Get("X-User") != "ivy" {
			t.Fatal("an active session ended before its lifetime")
		}
	}
	advance(11 * time.Minute)
	if c.get("/get").Header.Get("X-User") != "" {
		t.Error("the session outlived 10 idle minutes")
	}
	c.get("/login?u=ivy")
	for range 7 {
		advance(9 * time.Minute)
		c.get("/get")
	}
	if c.get("/get").Header.Get("X-User") != "" {
		t.Error("the session outlived its 1h lifetime")
	}
}

func TestTokensAndCookiesNeverReachTheLog(t *testing.T) {
	t.Parallel()
	a := newTestApp(t, session.NewMemoryStore(), session.Options{})
	c := a.client(t)
	var cookies []string
	for _, target := range []string{"/set?k=a&v=1", "/login?u=jo", "/renew", "/others", "/logout"} {
		cookies = append(cookies, c.cookie)
		c.get(target)
	}
	forged := a.client(t)
	forged.cookie = cookies[1] // now dead: an unknown-token event
	forged.get("/get")
	log := a.log.String()
	for _, ck := range cookies {
		if ck != "" && strings.Contains(log, ck) {
			t.Errorf("a cookie value appears in the log")
		}
	}
	for _, want := range []string{"session created", "session logged in", "session renewed", "session logged out", "session ended", "token_hash"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
}

func TestInvalidUserIDsAreRefusedAtLogin(t *testing.T) {
	t.Parallel()
	a := newTestApp(t, session.NewMemoryStore(), session.Options{})
	c := a.client(t)
	for _, u := range []string{"", strings.Repeat("x", session.MaxUserIDLength+1)} {
		if res := c.get("/login?u=" + u); res.StatusCode != http.StatusBadRequest {
			t.Errorf("login as a %d-byte user: status %d, want the handler's 400", len(u), res.StatusCode)
		}
	}
}
