package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// isAnswer reports whether err is the store's answer, not its absence. An
// answer, error or not, leaves the breaker as it is: the primary is up.
func isAnswer(err error) bool {
	return err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidUserID) ||
		errors.Is(err, ErrNotInteger) || errors.Is(err, ErrSessionExists) || errors.Is(err, ErrRefused)
}

// callPrimary runs call against the primary within the deadline. A call
// still running at the deadline is abandoned (the client ends it at its own
// timeouts) and its result discarded. outage reports a failure for want of
// an answer; it opens the breaker.
func callPrimary[T any](ctx context.Context, f *FallbackStore, primaryCall func(context.Context) (T, error)) (v T, outage bool, err error) {
	if n := f.abandoned.Load(); n >= f.maxAbandoned {
		err = fmt.Errorf("%w: %d abandoned calls to the primary still running", ErrUnavailable, n)
		f.openBreaker(err)
		return v, true, err
	}
	type result struct {
		v   T
		err error
	}
	cctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	const running, finished, abandoned = 0, 1, 2
	var state atomic.Int32
	done := make(chan result, 1)
	go func() {
		v, err := primaryCall(cctx)
		done <- result{v, err}
		if !state.CompareAndSwap(running, finished) {
			f.abandoned.Add(-1) // the caller had given up on it
		}
	}()
	select {
	case r := <-done:
		v, err = r.v, r.err
	case <-cctx.Done():
		f.abandoned.Add(1)
		if state.CompareAndSwap(running, abandoned) {
			err = cctx.Err()
			break
		}
		f.abandoned.Add(-1) // it finished just now after all
		r := <-done
		v, err = r.v, r.err
	}
	if isAnswer(err) {
		return v, false, err
	}
	if ctx.Err() != nil {
		return v, false, ctx.Err() // the caller gave up: not the primary's fault
	}
	f.openBreaker(err)
	return v, true, err
}

func (f *FallbackStore) openBreaker(cause error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.open.Load() {
		f.copyEpoch.Store(f.trustedEpoch())
		// Sessions made or renewed here during the outage are restored
		// only if no RevokeAll of their user came after what this instance
		// last saw of the primary. Having seen nothing, it assumes any did.
		f.horizon = time.UnixMicro(max(f.primaryClock.Load(), 1))
		f.open.Store(true)
		f.notify(EventPrimaryDown, cause)
		f.log().Warn("session store: primary unavailable; serving from memory until it answers and the outage is replayed", "error", cause)
	}
}

// maxRoutes bounds how often one call may find the breaker closed again
// just as it was about to use the fallback.
const maxRoutes = 3

// call is one Store call as route sends it.
type call[T any] struct {
	// primary runs the call against the primary.
	primary func(context.Context) (T, error)
	// onAnswer, if set, sees every answer of the primary (not outages).
	onAnswer func(T, error)
	// notIdempotent marks a call that may have been applied by a primary
	// call that failed (Incr): it is not served by the fallback after such
	// a failure, since applying it there would apply it twice.
	notIdempotent bool
	// fallback serves the call from memory; it runs under f.mu.
	fallback func() (T, error)
}

// route sends one call to the primary while the breaker is closed, and to
// the fallback, under f.mu, while it is open. Holding f.mu orders fallback
// writes with recovery: a write never lands in memory after the replay
// that closed the breaker.
func route[T any](ctx context.Context, f *FallbackStore, c call[T]) (T, error) {
	var zero T
	for range maxRoutes {
		if !f.open.Load() {
			v, outage, err := callPrimary(ctx, f, c.primary)
			if !outage {
				if c.onAnswer != nil {
					c.onAnswer(v, err)
				}
				return v, err
			}
			if c.notIdempotent {
				return zero, fmt.Errorf("%w: the primary may or may not have applied it: %v", ErrUnavailable, err)
			}
		}
		f.mu.Lock()
		if f.open.Load() {
			v, err := c.fallback()
			f.mu.Unlock()
			f.notify(EventFallback, err)
			return v, err
		}
		f.mu.Unlock()
	}
	return zero, fmt.Errorf("%w: the primary is flapping", ErrUnavailable)
}

// probeLoop checks, one probe at a time, whether the primary is back.
func (f *FallbackStore) probeLoop() {
	defer close(f.done)
	t := time.NewTicker(f.probeGap)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			if f.open.Load() {
				f.recover()
			}
		}
	}
}

// probeKey names no session: a load of it answers ErrNotFound when the
// primary is up.
var probeKey = Key{Hash: strings.Repeat("0", 43)}
