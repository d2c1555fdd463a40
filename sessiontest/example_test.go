package sessiontest_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/sessionkit/session"
	"github.com/sessionkit/session/sessiontest"
)

// A handler test with a logged-in session and a pre-filled cart, without a
// login handler: Cookie makes the session in the Manager's store.
func ExampleCookie() {
	m, err := session.New(session.Options{Secrets: [][]byte{[]byte("a 32-byte or longer random secret!")}})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	cart := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Load(r.Context())
		if err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		items, _ := s.Get("cart")
		fmt.Fprintf(w, "%s has %s", s.UserID(), items)
	}))

	cookie, err := sessiontest.Cookie(m, "alice", map[string]string{"cart": "3 apples"})
	if err != nil {
		log.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/cart", nil)
	req.AddCookie(cookie)
	rec := httptest.NewRecorder()
	cart.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Body.String())
	// Output: 200 alice has 3 apples
}
