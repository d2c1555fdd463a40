package bench

import (
	"bufio"
	"context"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Counter is a go-redis hook that counts round trips and the commands sent
// (a pipeline is one round trip; a script is one command here, while
// commandStats counts what it runs inside). It is safe for concurrent use.
type Counter struct {
	roundTrips atomic.Int64
	commands   atomic.Int64
}

// DialHook implements redis.Hook.
func (c *Counter) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (c *Counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.roundTrips.Add(1)
		c.commands.Add(1)
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements redis.Hook.
func (c *Counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.roundTrips.Add(1)
		c.commands.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// RoundTrips returns the round trips counted so far.
func (c *Counter) RoundTrips() int64 { return c.roundTrips.Load() }

// Commands returns the commands sent so far.
func (c *Counter) Commands() int64 { return c.commands.Load() }

// commandStats returns the server's count of executed commands, those run
// inside scripts included, leaving out the connection and INFO chatter of
// clients and of this measurement itself.
func commandStats(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, err
	}
	var total int64
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		// cmdstat_get:calls=3,usec=...
		name, rest, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		switch {
		case name == "info", name == "hello", name == "ping", strings.HasPrefix(name, "client"),
			name == "memory|usage", name == "flushall", name == "keys", name == "script|load":
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		calls, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			return 0, err
		}
		total += calls
	}
	return total, sc.Err()
}
