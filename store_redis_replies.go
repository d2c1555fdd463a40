package session

import (
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// outageReplies start the Redis error replies that mean the server cannot
// serve for now rather than that it refuses the operation: it is loading
// its dataset, its master or cluster is down, a slot is moving, or a
// script blocks it. They count as outages; every other reply is an answer.
var outageReplies = []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "MOVED", "ASK", "ERR max number of clients"}

// refusal marks a Redis error reply with ErrRefused, unless it is one of
// outageReplies. Errors that are not replies (timeouts, refused or reset
// connections) are left as they are: the store could not answer.
func refusal(err error) error {
	var reply redis.Error
	if err == nil || !errors.As(err, &reply) || errors.Is(err, redis.Nil) || errors.Is(err, ErrRefused) {
		return err
	}
	for _, prefix := range outageReplies {
		if redis.HasErrorPrefix(err, prefix) || strings.HasPrefix(reply.Error(), prefix) {
			return err
		}
	}
	return fmt.Errorf("%w: %w", ErrRefused, err)
}
