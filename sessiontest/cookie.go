package sessiontest

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/sessionkit/session"
)

// Cookie returns the cookie of a new session of m, logged in as userID
// ("" for an anonymous one, which needs values) and holding values, for handler tests: add it
// to a request (req.AddCookie) and the handler sees that session, as it
// would for a browser that had logged in. The session is made through m's
// own middleware, so it is in m's store like any other.
func Cookie(m *session.Manager, userID string, values map[string]string) (*http.Cookie, error) {
	if userID == "" && len(values) == 0 {
		return nil, fmt.Errorf("sessiontest: an anonymous session without values is never stored, so it has no cookie")
	}
	var failed error
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Load(r.Context())
		if err != nil {
			failed = err
			return
		}
		for k, v := range values {
			s.Set(k, v)
		}
		if userID != "" {
			failed = s.Login(r.Context(), userID)
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if failed != nil {
		return nil, fmt.Errorf("sessiontest: making a session: %w", failed)
	}
	res := rec.Result()
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sessiontest: making a session: the middleware answered %s", res.Status)
	}
	for _, c := range res.Cookies() {
		if c.MaxAge >= 0 && c.Value != "" {
			return c, nil
		}
	}
	return nil, fmt.Errorf("sessiontest: making a session: no cookie in %q", res.Header.Values("Set-Cookie"))
}
