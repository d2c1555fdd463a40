// Package browsertest drives the demo app in ../ (the one `go run ./example`
// starts) with a headless Chromium: sign in, devices, log out other devices,
// sign out, and the cookie as the browser really keeps it.
//
// It is its own module so that chromedp, which only this test needs, stays
// out of the library's go.mod. It builds the demo from the parent module and
// runs it as a separate process, exactly as a user would, so it imports
// nothing from the library. Run it from this directory:
//
//	go test ./...
//
// Without a Chromium on PATH the test skips, unless SESSION_REQUIRE_BROWSER=1
// (as in CI) turns the skip into a failure. SESSION_SCREENSHOT=path writes a
// PNG of the devices page there, for the README.
package browsertest
