package cluster

import (
	"context"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

type redisMessage = redis.Message

// redisPipe is a transaction being staged (publishLater).
type redisPipe = redis.Pipeliner

// quietLogger silences go-redis's own log (a dial failure per attempt
// while Redis is down): the link's state is said once, by setUp.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

var quietOnce sync.Once

func silenceRedisLog() { quietOnce.Do(func() { redis.SetLogger(quietLogger{}) }) }

// redisChannelOpts: a big enough buffer that a burst of news never drops
// (the channel is drained by one goroutine applying to memory).
func redisChannelOpts() []redis.ChannelOption {
	return []redis.ChannelOption{redis.WithChannelSize(1000)}
}

func splitID(id string) (ms, seq uint64) {
	a, b, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(a, 10, 64)
	seq, _ = strconv.ParseUint(b, 10, 64)
	return ms, seq
}

func formatID(ms, seq uint64) string {
	return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq, 10)
}
