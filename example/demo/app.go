package demo

import (
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sessionkit/session"
)

// demoPassword is the one password every demo account accepts.
const demoPassword = "demo"

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// appConfig is what the pages say about the store and the cookie.
type appConfig struct {
	storeName string      // shown in the footer
	healthy   func() bool // a FallbackStore's breaker; nil without one
	// outage stops (true) or restarts (false) the embedded Redis behind a
	// FallbackStore; nil unless the demo runs both.
	outage   func(down bool) error
	insecure bool // the cookie has no Secure attribute
}

// app is the demo's handlers. It is safe for concurrent use.
type app struct {
	appConfig
	m     *session.Manager
	pages map[string]*template.Template

	mu        sync.Mutex
	redisDown bool // outage(true) was the last call
}

func newApp(m *session.Manager, cfg appConfig) (*app, error) {
	a := &app{appConfig: cfg, m: m, pages: map[string]*template.Template{}}
	funcs := template.FuncMap{
		"ago":    ago,
		"when":   func(t time.Time) string { return t.Format("Jan 2, 15:04:05") },
		"device": deviceName,
	}
	for _, page := range []string{"home", "login", "account", "devices", "signed-out"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, err
		}
		a.pages[page] = t
	}
	return a, nil
}

// routes wires the pages. Forms are protected against cross-site requests by
// http.CrossOriginProtection; SameSite=Lax on the cookie is a second line.
func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFiles, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", a.home)
	mux.HandleFunc("POST /cart", a.addToCart)
	mux.HandleFunc("POST /cart/clear", a.clearCart)
	mux.HandleFunc("GET /login", a.loginForm)
	mux.HandleFunc("POST /login", a.login)
	mux.HandleFunc("POST /logout", a.logout)
	mux.HandleFunc("GET /signed-out", a.signedOut)
	mux.HandleFunc("GET /account", a.account)
	mux.HandleFunc("GET /devices", a.devices)
	mux.HandleFunc("POST /devices/revoke", a.revoke)
	mux.HandleFunc("POST /devices/logout-others", a.logoutOthers)
	mux.HandleFunc("POST /demo/redis", a.toggleRedis)
	return http.NewCrossOriginProtection().Handler(a.m.Middleware(mux))
}

// page is what every template gets.
type page struct {
	User    string
	Flash   string
	Warning string // the browser is likely to drop the cookie
	Store   string
	Outage  *outageControl // nil: no control on the page
	// Degraded: a FallbackStore is serving from memory.
	Degraded bool
	Data     any
}

// outageControl is the footer's button that stops or starts the embedded Redis.
type outageControl struct {
	Down bool // Redis is stopped: the button starts it
}

func (a *app) render(w http.ResponseWriter, r *http.Request, s *session.Session, name string, data any) {
	p := page{User: s.UserID(), Data: data, Store: a.storeName}
	if a.healthy != nil && !a.healthy() {
		p.Degraded = true
		p.Store += " (Redis is not answering: serving from memory)"
	}
	if a.outage != nil {
		a.mu.Lock()
		p.Outage = &outageControl{Down: a.redisDown}
		a.mu.Unlock()
	}
	switch {
	case a.insecure:
	case r.TLS == nil && !isLoopbackHost(r.Host):
		p.Warning = "This page came over plain HTTP from " + r.Host + ", so your browser will not keep the Secure session cookie and nothing will stick. Open it as http://localhost, serve it over HTTPS, or restart the demo with -insecure."
	case cookieDropped(r):
		p.Warning = "Your browser did not send back the session cookie the home page set, so nothing will stick. Safari does not keep Secure cookies on http://localhost (Chrome, Edge and Firefox do): restart the demo with -insecure, or use another browser."
	}
	if flash, ok := s.Pop("flash"); ok { // read once
		p.Flash = flash
	}
	var buf strings.Builder
	if err := a.pages[name].Execute(&buf, p); err != nil {
		slog.ErrorContext(r.Context(), "demo: rendering a page", "page", name, "error", err)
		http.Error(w, "The page could not be shown.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(buf.String()))
}

// load returns the session, or answers 503 if the store is unreachable.
func (a *app) load(w http.ResponseWriter, r *http.Request) (*session.Session, bool) {
	s, err := a.m.Load(r.Context())
	if err != nil {
		http.Error(w, "The session store is unavailable. Try again shortly.", http.StatusServiceUnavailable)
		return nil, false
	}
	return s, true
}

func (a *app) redirect(w http.ResponseWriter, r *http.Request, s *session.Session, to, flash string) {
	if flash != "" {
		s.Set("flash", flash)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (a *app) home(w http.ResponseWriter, r *http.Request) {
	s, ok := a.load(w, r)
	if !ok {
		return
	}
	visits, err := s.Incr(r.Context(), "visits", 1)
	if errors.Is(err, session.ErrUnavailable) {
		// A FallbackStore refuses to count during an outage rather than
		// risk counting twice; the rest of the page still works.
		visits = 0
	} else if err != nil {
		http.Error(w, "The session store is unavailable. Try again shortly.", http.StatusServiceUnavailable)
		return
	}
	cart, _ := s.Get("cart")
	var items []string
	if cart != "" {
		items = strings.Split(cart, "\n")
	}
	a.render(w, r, s, "home", map[string]any{"Visits": visits, "Cart": items, "ID": s.ID()})
}

func (a *app) addToCart(w http.ResponseWriter, r *http.Request) {
	s, ok := a.load(w, r)
	if !ok {
		return
	}
	item := strings.TrimSpace(strings.ReplaceAll(r.FormValue("item"), "\n", " "))
	if item == "" || len(item) > 64 {
		a.redirect(w, r, s, "/", "Name an item of 1 to 64 characters.")
		return
	}
	cart, _ := s.Get("cart")
	if cart != "" {
		cart += "\n"
	}
	s.Set("cart", cart+item)
	a.redirect(w, r, s, "/", "")
}

func (a *app) clearCart(w http.ResponseWriter, r *http.Request) {
	s, ok := a.load(w, r)
	if !ok {
		return
	}
	s.Delete("cart")
	a.redirect(w, r, s, "/", "Cart emptied.")
}

func (a *app) loginForm(w http.ResponseWriter, r *http.Request) {
	s, ok := a.load(w, r)
	if !ok {
		return
	}
	a.render(w, r, s, "login", map[string]any{"Password": demoPassword})
}

func (a *app) login(w http.ResponseWriter, r *http.Request) {
	s, ok := a.load(w, r)
	if !ok {
		return
	}
	user := strings.TrimSpace(r.FormValue("user"))
	if user == "" || len(user) > 64 || r.FormValue("password") != demoPassword {
		a.redirect(w, r, s, "/login", "Use any user name (up to 64 characters) and the password "+demoPassword+".")
		return
	}
	// Remember the public ID from before, so the account page can show the rotation.
	s.Set("id_before_login", s.ID())
	remember := r.FormValue("remember") == "1"
	if err := s.LoginWith(r.Context(), user, session.LoginOptions{Remember: remember}); err != nil {
		http.Error(w, "Could not sign in. Try again shortly.", http.StatusServiceUnavailable)
		return
	}
	a.redirect(w, r, s, "/account", "Signed in as "+user+". Your session token was rotated.")
}

func (a *app) logout(w http.ResponseWriter, r *http.Request) {
	s, ok := a.load(w, r)
	if !ok {
		return
	}
	if err := s.Logout(r.Context()); err != nil {
		http.Error(w, "Could not sign out: the session store is unavailable. Try again shortly.", http.StatusServiceUnavailable)
		return
	}
	// No flash: storing one would start a new session, and the point of
	// this page is that the browser holds no session cookie any more.
	http.Redirect(w, r, "/signed-out", http.StatusSeeOther)
}

// signedOut confirms a sign-out without starting a session.
func (a *app) signedOut(w http.ResponseWriter, r *http.Request) {
	s, ok := a.load(w, r)
	if !ok {
		return
	}
	a.render(w, r, s, "signed-out", nil)
}

// signedIn loads the session and sends anonymous visitors to the login page.
func (a *app) signedIn(w http.ResponseWriter, r *http.Request) (*session.Session, bool) {
	s, ok := a.load(w, r)
	if !ok {
		return nil, false
	}
	if s.UserID() == "" {
		a.redirect(w, r, s, "/login", "Sign in first.")
		return nil, false
	}
	return s, true
}

func (a *app) account(w http.ResponseWriter, r *http.Request) {
	s, ok := a.signedIn(w, r)
	if !ok {
		return
	}
	before, _ := s.Get("id_before_login")
	values := s.All()
	delete(values, "flash") // shown above the page, not as data
	a.render(w, r, s, "account", map[string]any{"ID": s.ID(), "Before": before, "Values": values})
}

// device is one row of the devices page.
type device struct {
	session.Info
	Current bool
}

func (a *app) devices(w http.ResponseWriter, r *http.Request) {
	s, ok := a.signedIn(w, r)
	if !ok {
		return
	}
	list, err := a.m.Sessions(r.Context(), s.UserID())
	if err != nil {
		http.Error(w, "The session store is unavailable. Try again shortly.", http.StatusServiceUnavailable)
		return
	}
	rows := make([]device, len(list))
	for i, in := range list {
		rows[i] = device{Info: in, Current: in.ID == s.ID()}
	}
	// This device first, then newest first.
	slices.SortStableFunc(rows, func(x, y device) int {
		switch {
		case x.Current == y.Current:
			return 0
		case x.Current:
			return -1
		}
		return 1
	})
	a.render(w, r, s, "devices", map[string]any{"Devices": rows})
}

func (a *app) revoke(w http.ResponseWriter, r *http.Request) {
	s, ok := a.signedIn(w, r)
	if !ok {
		return
	}
	id := r.FormValue("id")
	if id == s.ID() {
		a.redirect(w, r, s, "/devices", "To end this session, sign out.")
		return
	}
	if err := a.m.Revoke(r.Context(), s.UserID(), id); err != nil {
		a.redirect(w, r, s, "/devices", "That session had already ended.")
		return
	}
	a.redirect(w, r, s, "/devices", "Device signed out.")
}

func (a *app) logoutOthers(w http.ResponseWriter, r *http.Request) {
	s, ok := a.signedIn(w, r)
	if !ok {
		return
	}
	n, err := s.LogoutOthers(r.Context())
	if err != nil {
		http.Error(w, "The session store is unavailable. Try again shortly.", http.StatusServiceUnavailable)
		return
	}
	msg := "Signed out 1 other device."
	if n != 1 {
		msg = "Signed out " + strconv.Itoa(n) + " other devices."
	}
	a.redirect(w, r, s, "/devices", msg)
}

// toggleRedis stops or restarts the embedded Redis, so that a FallbackStore
// can be seen keeping the app up and replaying the outage afterwards.
func (a *app) toggleRedis(w http.ResponseWriter, r *http.Request) {
	if a.outage == nil {
		http.NotFound(w, r)
		return
	}
	down := r.FormValue("redis") == "stop"
	a.mu.Lock()
	err := a.outage(down)
	if err == nil {
		a.redisDown = down
	}
	a.mu.Unlock()
	if err != nil {
		slog.ErrorContext(r.Context(), "demo: restarting the embedded Redis", "error", err)
		http.Error(w, "Could not restart the embedded Redis; see the demo's log.", http.StatusInternalServerError)
		return
	}
	back := "/"
	if from, err := url.Parse(r.Referer()); err == nil && from.Host == r.Host && strings.HasPrefix(from.Path, "/") {
		back = from.Path
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// ago says how long ago t was, in words.
func ago(t time.Time) string {
	d := time.Since(t).Round(time.Second)
	switch {
	case d < 5*time.Second:
		return "just now"
	case d < time.Minute:
		return d.String() + " ago"
	case d < time.Hour:
		return d.Round(time.Minute).String() + " ago"
	}
	return t.Format("Jan 2 15:04")
}

// cookieDropped reports whether the request comes from the home page, which
// always sets the session cookie, yet carries none: the browser refused it.
func cookieDropped(r *http.Request) bool {
	from, err := url.Parse(r.Referer())
	if err != nil || from.Host != r.Host || from.Path != "/" {
		return false
	}
	_, err = r.Cookie(session.DefaultCookieName)
	return errors.Is(err, http.ErrNoCookie)
}

// isLoopbackHost reports whether a Host header names this machine, where
// browsers treat plain HTTP as a secure context.
func isLoopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// deviceName turns a User-Agent into words such as "Firefox on Windows".
// It is a label for people, not detection: the full string is shown too.
func deviceName(ua string) string {
	browser := ""
	for _, b := range []struct{ token, name string }{
		{"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Firefox/", "Firefox"}, {"FxiOS/", "Firefox"},
		{"HeadlessChrome/", "Headless Chrome"}, {"CriOS/", "Chrome"}, {"Chrome/", "Chrome"},
		{"Version/", "Safari"}, {"curl/", "curl"},
	} {
		if strings.Contains(ua, b.token) {
			browser = b.name
			break
		}
	}
	system := ""
	for _, o := range []struct{ token, name string }{
		{"iPhone", "iPhone"}, {"iPad", "iPad"}, {"Android", "Android"}, {"CrOS", "ChromeOS"},
		{"Windows", "Windows"}, {"Mac OS X", "macOS"}, {"Linux", "Linux"},
	} {
		if strings.Contains(ua, o.token) {
			system = o.name
			break
		}
	}
	switch {
	case browser != "" && system != "":
		return browser + " on " + system
	case browser != "":
		return browser
	case system != "":
		return system
	}
	return "Unknown device"
}
