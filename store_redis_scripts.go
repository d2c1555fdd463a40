package session

import (
	"context"
	"embed"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// runLoad runs the load script, through the local cache when there is
// one, which then keeps what it read (see redisCache.runLoad).
func (s *RedisStore) runLoad(ctx context.Context, k Key, p Policy, keys []string, args ...any) *redis.Cmd {
	if s.cache == nil {
		return s.run(ctx, scriptLoad, keys, args...)
	}
	return s.cache.runLoad(ctx, k, p, keys, args...)
}

// run runs script by EVALSHA, falling back to EVAL on NOSCRIPT. go-redis's
// Script.Run routes both by the first key, so the EVAL goes to the very
// node that lacked the script: the fallback works per node, and on a
// primary promoted from a replica that never saw the script.
func (s *RedisStore) run(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	cmd := script.Run(ctx, s.c, keys, args...)
	s.noteFailure(cmd.Err())
	if err := cmd.Err(); err != nil {
		cmd.SetErr(refusal(err))
	}
	return cmd
}

// noteFailure makes a cluster client reload its slot map after a failure
// that may mean a primary is gone: go-redis otherwise keeps sending that
// slot's commands to the dead primary until its ClusterStateReloadInterval
// (60s by default) runs out, long after a replica took over
// (redis/go-redis#3979). The reload is asynchronous and coalesced.
func (s *RedisStore) noteFailure(err error) {
	if err == nil || s.cluster == nil {
		return
	}
	var reply redis.Error
	if errors.As(err, &reply) && !redis.HasErrorPrefix(err, "CLUSTERDOWN") && !redis.HasErrorPrefix(err, "TRYAGAIN") {
		return // Redis answered: the node is alive and serves the slot
	}
	s.cluster.ReloadState(context.Background())
}

// runDurable runs script like run; with WaitReplicas set, it then waits
// until that many replicas have the write. WAIT counts only the writes of
// its own connection, so the script and the WAIT go in one pipeline to the
// primary of the first key.
func (s *RedisStore) runDurable(ctx context.Context, script *redis.Script, keys []string, args ...any) (any, error) {
	if s.waitReplicas == 0 {
		return s.run(ctx, script, keys, args...).Result()
	}
	var node interface{ Pipeline() redis.Pipeliner } = s.c
	if s.cluster != nil {
		n, err := s.cluster.MasterForKey(ctx, keys[0])
		if err != nil {
			s.noteFailure(err)
			return nil, refusal(err)
		}
		node = n
	}
	res, err := evalAndWait(ctx, node, script.EvalSha, keys, args, s.waitReplicas, s.waitTimeout)
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		res, err = evalAndWait(ctx, node, script.Eval, keys, args, s.waitReplicas, s.waitTimeout)
	}
	if s.cluster != nil && (redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK")) {
		// The slot moved since the client's map was made: reload it, and
		// let the client follow the redirect (without the wait).
		s.cluster.ReloadState(context.Background())
		return s.run(ctx, script, keys, args...).Result()
	}
	s.noteFailure(err)
	return res, refusal(err)
}

// evalAndWait sends eval and WAIT in one pipeline. Too few replicas within
// the timeout is not an error: the write is on the primary.
func evalAndWait(ctx context.Context, node interface{ Pipeline() redis.Pipeliner },
	eval func(context.Context, redis.Scripter, []string, ...any) *redis.Cmd,
	keys []string, args []any, replicas int, timeout time.Duration) (any, error) {
	pipe := node.Pipeline()
	cmd := eval(ctx, pipe, keys, args...)
	pipe.Do(ctx, "WAIT", replicas, timeout.Milliseconds())
	_, _ = pipe.Exec(ctx) // the script's own error is checked here
	return cmd.Result()
}

//go:embed lua/*.lua
var luaFiles embed.FS

func loadScript(name string) *redis.Script {
	prelude, err := luaFiles.ReadFile("lua/prelude.lua")
	if err != nil {
		panic(err) // embedded at build time: cannot happen at run time
	}
	body, err := luaFiles.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(err)
	}
	return redis.NewScript(string(prelude) + "\n" + string(body))
}

var (
	scriptLoad      = loadScript("load")
	scriptCreate    = loadScript("create")
	scriptTakeover  = loadScript("takeover")
	scriptRotate    = loadScript("rotate")
	scriptDelete    = loadScript("delete")
	scriptList      = loadScript("list")
	scriptRevoke    = loadScript("revoke")
	scriptRevokeAll = loadScript("revokeall")
	scriptSettle    = loadScript("settle")
)
