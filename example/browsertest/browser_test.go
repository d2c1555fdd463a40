package browsertest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

const (
	// requireBrowser set to 1 turns "no Chromium, skipped" into a failure.
	requireBrowser = "SESSION_REQUIRE_BROWSER"
	// screenshotTo names a PNG file to write the devices page to.
	screenshotTo = "SESSION_SCREENSHOT"

	cookieName = "__Host-session"
	password   = "demo"
	// phoneUA makes the second browser context look like another device on
	// the devices page; both are the same headless Chromium.
	phoneUA = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Mobile/15E148 Safari/604.1"
)

func TestSignInDevicesAndSignOutInARealBrowser(t *testing.T) {
	chromium := findChromium(t)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	base := startDemo(t, ctx)
	browser := startBrowser(t, ctx, chromium)

	// Two browser contexts: two cookie jars, as two devices would have.
	laptop, closeLaptop := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	defer closeLaptop()
	phone, closePhone := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	defer closePhone()
	do(t, laptop, chromedp.EmulateViewport(1100, 640))
	call(t, phone, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{UserAgent: phoneUA})

	// An anonymous visitor: the counter goes up across reloads.
	do(t, laptop, chromedp.Navigate(base+"/"))
	if got := text(t, laptop, chromedp.ID("visits")); got != "1" {
		t.Errorf("first visit: counter %q, want 1", got)
	}
	do(t, laptop, chromedp.Reload())
	if got := text(t, laptop, chromedp.ID("visits")); got != "2" {
		t.Errorf("after a reload: counter %q, want 2", got)
	}
	anonCookie := sessionCookie(t, laptop, base)
	if anonCookie == nil {
		t.Fatalf("the browser kept no %s cookie from http://localhost; its cookies: %v", cookieName, cookieNames(t, laptop, base))
	}
	submit(t, laptop, chromedp.CSS(`form[action="/cart"] input[name=item]`), "apples", chromedp.CSS(`form[action="/cart"] button`))
	if got := text(t, laptop, chromedp.ID("cart")); got != "apples" {
		t.Errorf("cart %q, want apples", got)
	}
	anonID := text(t, laptop, chromedp.ID("session-id"))
	if n := eval[int](t, laptop, `document.querySelectorAll(".warning").length`); n != 0 {
		t.Errorf("the home page warns that the browser dropped the cookie: %s", text(t, laptop, chromedp.CSS(".warning")))
	}

	// The numeric loopback address is a secure context too; the demo's own
	// warning about plain HTTP must not show there.
	numeric := strings.Replace(base, "localhost", "127.0.0.1", 1)
	do(t, phone, chromedp.Navigate(numeric+"/"), chromedp.Reload())
	if got := text(t, phone, chromedp.ID("visits")); got != "2" {
		t.Errorf("on %s the counter is %q after a reload, want 2: the browser dropped the Secure cookie", numeric, got)
	}
	if warned := eval[int](t, phone, `document.querySelectorAll(".warning").length`); warned != 0 {
		t.Errorf("%s shows the plain-HTTP warning", numeric)
	}

	// Sign in: a new token and a new public ID, the values kept.
	signIn(t, laptop, base, "alice")
	if got := location(t, laptop); got != base+"/account" {
		t.Fatalf("after sign-in the laptop is at %s, want /account", got)
	}
	if before := text(t, laptop, chromedp.ID("id-before")); before != anonID {
		t.Errorf("account page: ID before sign-in %q, want the anonymous one %q", before, anonID)
	}
	if now := text(t, laptop, chromedp.ID("session-id")); now == anonID || now == "" {
		t.Errorf("account page: session ID %q after sign-in, want a new one (was %q)", now, anonID)
	}

	// The cookie as the browser holds it.
	c := sessionCookie(t, laptop, base)
	switch {
	case c == nil:
		t.Fatalf("no %s cookie after sign-in; cookies: %v", cookieName, cookieNames(t, laptop, base))
	case c.Value == anonCookie.Value:
		t.Error("sign-in did not rotate the cookie's token")
	case !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteLax || c.Path != "/" || c.Domain != "localhost":
		t.Errorf("cookie attributes: HttpOnly=%v Secure=%v SameSite=%q Path=%q Domain=%q; want HttpOnly, Secure, Lax, /, localhost",
			c.HTTPOnly, c.Secure, c.SameSite, c.Path, c.Domain)
	case !c.Session:
		t.Errorf("cookie expiry %v, want a browser-session cookie for a sign-in without Remember me", time.Unix(int64(c.Expires), 0))
	}
	if js := eval[string](t, laptop, `document.cookie`); strings.Contains(js, cookieName) {
		t.Errorf("document.cookie shows the session cookie (%q): it is not HttpOnly", js)
	}

	// A second device signs in as the same user: both are on the devices page.
	do(t, phone, chromedp.Navigate(base+"/"))
	signIn(t, phone, base, "alice")
	do(t, laptop, chromedp.Navigate(base+"/devices"))
	if n := eval[int](t, laptop, `document.querySelectorAll("#devices tbody tr").length`); n != 2 {
		t.Fatalf("devices page lists %d sessions, want 2:\n%s", n, text(t, laptop, chromedp.ID("devices")))
	}
	if n := eval[int](t, laptop, `document.querySelectorAll("#devices tr.current").length`); n != 1 {
		t.Errorf("%d rows are marked as this device, want 1", n)
	}
	if rows := text(t, laptop, chromedp.ID("devices")); !strings.Contains(rows, "Safari on iPhone") || !strings.Contains(rows, "Headless Chrome on Linux") || !strings.Contains(rows, "this device") {
		t.Errorf("devices page lacks a device:\n%s", rows)
	}
	if path := os.Getenv(screenshotTo); path != "" {
		png, err := chromedp.Run(laptop, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote the devices page to %s", path)
	}

	// "Log out other devices" on the laptop signs the phone out on its next page load.
	do(t, laptop, waitLoad(chromedp.Click(chromedp.ID("logout-others"))))
	if got := text(t, laptop, chromedp.ID("flash")); got != "Signed out 1 other device." {
		t.Errorf("after log out other devices: %q", got)
	}
	if n := eval[int](t, laptop, `document.querySelectorAll("#devices tbody tr").length`); n != 1 {
		t.Errorf("devices page lists %d sessions after log out other devices, want 1", n)
	}
	do(t, phone, chromedp.Navigate(base+"/account"))
	if got := location(t, phone); got != base+"/login" {
		t.Errorf("the phone asked for /account after being logged out and got %s, want /login", got)
	}
	if got := text(t, phone, chromedp.ID("flash")); got != "Sign in first." {
		t.Errorf("the phone's login page says %q", got)
	}

	// Sign out clears the cookie.
	do(t, laptop, waitLoad(chromedp.Click(chromedp.CSS(`form[action="/logout"] button`))))
	if got := location(t, laptop); got != base+"/signed-out" {
		t.Errorf("after sign-out the laptop is at %s", got)
	}
	if c := sessionCookie(t, laptop, base); c != nil {
		t.Errorf("after sign-out the browser still holds %s=%s…", c.Name, c.Value[:8])
	}
	do(t, laptop, chromedp.Navigate(base+"/account"))
	if got := location(t, laptop); got != base+"/login" {
		t.Errorf("after sign-out /account led to %s, want /login", got)
	}
	t.Logf("browser test took %v (Chromium at %s)", time.Since(start).Round(time.Millisecond), chromium)
}

// findChromium returns the browser to drive, or skips the test.
func findChromium(t *testing.T) string {
	t.Helper()
	names := []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"}
	for _, name := range names {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	msg := "no Chromium on PATH (looked for " + strings.Join(names, ", ") + "): install one (Debian: apt-get install chromium) to run the browser test"
	if os.Getenv(requireBrowser) == "1" {
		t.Fatal(msg + "; " + requireBrowser + "=1 makes this a failure")
	}
	t.Skip(msg)
	return ""
}

// startDemo builds the demo app from the parent module, runs it on a free
// loopback port with no configuration (so on its embedded Redis), and
// returns the URL it prints. When the test ends it sends the demo an
// interrupt and checks that it stops cleanly.
func startDemo(t *testing.T, ctx context.Context) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if mod, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !bytes.Contains(mod, []byte("module github.com/sessionkit/session\n")) {
		t.Fatalf("%s is not the root of github.com/sessionkit/session: %v", root, err)
	}
	bin := filepath.Join(t.TempDir(), "demo")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./example")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./example: %v\n%s", err, out)
	}

	cmd := exec.Command(bin, "-addr", "127.0.0.1:0")
	cmd.Env = demoEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := new(syncBuffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var printed syncBuffer
	go func() {
		_, _ = io.Copy(&printed, stdout)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		defer func() {
			if t.Failed() {
				t.Logf("demo stdout:\n%s\ndemo stderr:\n%s", printed.String(), stderr.String())
			}
		}()
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Errorf("interrupting the demo: %v", err)
			return
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the demo did not exit cleanly on Ctrl-C: %v", err)
			} else if !strings.Contains(printed.String(), "stopped") {
				t.Errorf("the demo exited without saying it stopped")
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("the demo did not stop within 10s of Ctrl-C")
		}
	})

	url := regexp.MustCompile(`open (http://localhost:\d+)`)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := url.FindStringSubmatch(printed.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-exited:
			t.Fatalf("the demo exited before printing its URL: %v\nstdout:\n%s\nstderr:\n%s", err, printed.String(), stderr.String())
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("the demo printed no URL within 20s:\n%s", printed.String())
	return ""
}

// demoEnv is the test's environment without the demo's configuration, so
// the demo runs as `go run ./example` does on a fresh machine.
func demoEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REDIS_URL=") && !strings.HasPrefix(kv, "SESSION_SECRET=") {
			env = append(env, kv)
		}
	}
	return env
}

// startBrowser starts a headless Chromium with a fresh profile and returns
// a context for it; the browser goes when the test ends.
func startBrowser(t *testing.T, ctx context.Context, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	// Runs before t.TempDir's removal (cleanups run last first), and waits
	// for the browser to exit, so its profile directory is free to delete.
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return browser
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func call[P, R any](t *testing.T, ctx context.Context, cmd cdp.Command[P, R], params P) R {
	t.Helper()
	r, err := chromedp.Call(ctx, cmd, params)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func text[S chromedp.ID | chromedp.CSS](t *testing.T, ctx context.Context, sel S) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("reading #%s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

func location(t *testing.T, ctx context.Context) string {
	t.Helper()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// waitLoad runs the steps, which start a navigation (a form's POST and its
// redirect), and waits until the page that results has loaded.
func waitLoad(steps ...chromedp.Action[chromedp.Void]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.RunResponse(ctx, steps...)
		return chromedp.Void{}, err
	}
}

// submit types value into a form's field and presses its button.
func submit(t *testing.T, ctx context.Context, field chromedp.CSS, value string, button chromedp.CSS) {
	t.Helper()
	do(t, ctx, chromedp.SendKeys(field, value), waitLoad(chromedp.Click(button)))
}

func signIn(t *testing.T, ctx context.Context, base, user string) {
	t.Helper()
	do(t, ctx,
		chromedp.Navigate(base+"/login"),
		chromedp.SendKeys(chromedp.ID("login-user"), user),
		chromedp.SendKeys(chromedp.ID("login-password"), password),
		waitLoad(chromedp.Click(chromedp.ID("login-submit"))),
	)
}

// sessionCookie returns the session cookie the browser holds for base, or nil.
func sessionCookie(t *testing.T, ctx context.Context, base string) *network.Cookie {
	t.Helper()
	res := call(t, ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	for _, c := range res.Cookies {
		if c.Name == cookieName {
			return c
		}
	}
	return nil
}

func cookieNames(t *testing.T, ctx context.Context, base string) []string {
	t.Helper()
	var names []string
	for _, c := range call(t, ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}}).Cookies {
		names = append(names, fmt.Sprintf("%s (Secure=%v)", c.Name, c.Secure))
	}
	return names
}

// syncBuffer is a bytes.Buffer that a process's output goroutine may write
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
