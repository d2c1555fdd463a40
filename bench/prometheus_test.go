package bench

import (
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sessionkit/session"
)

// Metrics for a session Manager: pass the observer in Options, serve the
// registry with promhttp as usual.
func ExamplePrometheusObserver() {
	reg := prometheus.NewRegistry()
	obs, err := NewPrometheusObserver(reg)
	if err != nil {
		log.Fatal(err)
	}
	m, err := session.New(session.Options{
		Secrets:  [][]byte{[]byte("a 32-byte or longer random secret!")},
		Observer: obs,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := m.Load(r.Context())
		s.Set("seen", "yes")
	}))

	first := httptest.NewRecorder()
	h.ServeHTTP(first, httptest.NewRequest("GET", "/", nil))
	again := httptest.NewRequest("GET", "/", nil)
	again.Header.Set("Cookie", strings.Split(first.Header().Get("Set-Cookie"), ";")[0])
	h.ServeHTTP(httptest.NewRecorder(), again)
	forged := httptest.NewRequest("GET", "/", nil)
	forged.Header.Set("Cookie", session.DefaultCookieName+"=forged")
	h.ServeHTTP(httptest.NewRecorder(), forged)

	fmt.Println("operation series (create/ok, load/ok):", testutil.CollectAndCount(obs.ops))
	fmt.Println("rejected cookies:", testutil.ToFloat64(obs.security.WithLabelValues("cookie_rejected")))
	// Output:
	// operation series (create/ok, load/ok): 2
	// rejected cookies: 1
}
