// Package bench holds what the library's own module must not depend on:
// comparisons with peer libraries and integrations with metrics systems.
// It is its own module, with a replace directive to the library.
package bench
