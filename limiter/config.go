package limiter

import (
	"math"
	"time"

	"github.com/protoraft/protoraft/actors"
)

// DefaultPollInterval is how often the limiter actor asks its node for the
// Raft backlog and reclaims permits past their deadline, when
// Config.PollInterval is zero.
const DefaultPollInterval = 50 * time.Millisecond

// ClassLimits are the limits of one class of requests. A zero field is
// unlimited, so the zero value limits nothing.
type ClassLimits struct {
	// RPS is the class's rate for all principals together, in requests per
	// second; Burst is the token bucket's size (default: RPS rounded up,
	// at least 1).
	RPS   float64
	Burst int
	// PrincipalRPS and PrincipalBurst are the same for each principal on
	// its own.
	PrincipalRPS   float64
	PrincipalBurst int
	// Concurrency bounds the class's requests in flight: admitted and not
	// yet ended. PrincipalConcurrency bounds each principal's.
	Concurrency          int
	PrincipalConcurrency int
	// BytesInFlight bounds the encoded size (proto.Size) of the class's
	// requests in flight; PrincipalBytesInFlight each principal's. They
	// bound the memory that queued requests hold.
	BytesInFlight          int64
	PrincipalBytesInFlight int64
	// RequestBytes bounds the encoded size of one request.
	RequestBytes int64
}

// Config configures a limiter. The zero value limits nothing.
type Config struct {
	// Read, Write and Admin are the budgets of the three classes (see
	// ClassOf). Each is spent only by its own class, so a flood of reads
	// or writes never takes the budget administrative operations need.
	Read, Write, Admin ClassLimits
	// RaftBacklog refuses writes while the leader's log holds more than
	// this many entries appended and not yet applied. 0 is unlimited.
	RaftBacklog uint64
	// PollInterval is how often the limiter actor polls the node's backlog
	// (only while writes arrive or a backlog remains) and reclaims permits
	// past their deadline. Default DefaultPollInterval. Fixed at spawn.
	PollInterval time.Duration
}

// Class returns the limits of class c.
func (c *Config) Class(cl Class) *ClassLimits {
	switch cl {
	case ClassWrite:
		return &c.Write
	case ClassAdmin:
		return &c.Admin
	default:
		return &c.Read
	}
}

// Validate checks the configuration and returns an INVALID_ARGUMENT error
// naming the first field at fault ("limits.write.rps", as in
// UpdateLimitsRequest), or nil. It returns the concrete type so callers
// never meet a typed nil in an error interface.
func (c Config) Validate() *actors.Error {
	for cl := Class(0); cl < numClasses; cl++ {
		if err := c.Class(cl).validate("limits." + cl.String()); err != nil {
			return err
		}
	}
	if c.PollInterval < 0 || (c.PollInterval > 0 && c.PollInterval < time.Millisecond) {
		return actors.InvalidArgument("limits.poll_interval", "must be 0 (default) or at least 1ms, not %v", c.PollInterval)
	}
	return nil
}

func (l ClassLimits) validate(prefix string) *actors.Error {
	rate := func(name string, rps float64, burst int, burstName string) *actors.Error {
		if math.IsNaN(rps) || math.IsInf(rps, 0) || rps < 0 {
			return actors.InvalidArgument(prefix+"."+name, "must be a finite rate of 0 (unlimited) or more, not %v", rps)
		}
		if burst < 0 {
			return actors.InvalidArgument(prefix+"."+burstName, "must not be negative")
		}
		if burst > 0 && rps == 0 {
			return actors.InvalidArgument(prefix+"."+burstName, "a burst needs a rate (%s)", name)
		}
		return nil
	}
	if err := rate("rps", l.RPS, l.Burst, "burst"); err != nil {
		return err
	}
	if err := rate("rps_per_principal", l.PrincipalRPS, l.PrincipalBurst, "burst_per_principal"); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"concurrency", int64(l.Concurrency)},
		{"concurrency_per_principal", int64(l.PrincipalConcurrency)},
		{"bytes_in_flight", l.BytesInFlight},
		{"bytes_in_flight_per_principal", l.PrincipalBytesInFlight},
		{"request_bytes", l.RequestBytes},
	} {
		if f.v < 0 {
			return actors.InvalidArgument(prefix+"."+f.name, "must not be negative")
		}
	}
	// A request that may be admitted by size but can never fit in flight
	// would be refused forever with a hint to retry: refuse the setting.
	if l.RequestBytes > 0 {
		if l.BytesInFlight > 0 && l.RequestBytes > l.BytesInFlight {
			return actors.InvalidArgument(prefix+".request_bytes", "%d exceeds bytes_in_flight %d: such a request could never be admitted", l.RequestBytes, l.BytesInFlight)
		}
		if l.PrincipalBytesInFlight > 0 && l.RequestBytes > l.PrincipalBytesInFlight {
			return actors.InvalidArgument(prefix+".request_bytes", "%d exceeds bytes_in_flight_per_principal %d: such a request could never be admitted", l.RequestBytes, l.PrincipalBytesInFlight)
		}
	}
	return nil
}

// burst is the bucket size of a rate: the configured one, else the rate
// rounded up, so one second's worth may come at once; never below 1, or
// nothing would ever be admitted.
func burst(rps float64, b int) int {
	if b > 0 {
		return b
	}
	return max(1, int(math.Ceil(rps)))
}

// ToProto returns the limits of c as carried by the protocol.
func (c Config) ToProto() *actors.Limits {
	return &actors.Limits{
		Read:        c.Read.toProto(),
		Write:       c.Write.toProto(),
		Admin:       c.Admin.toProto(),
		RaftBacklog: c.RaftBacklog,
	}
}

func (l ClassLimits) toProto() *actors.ClassLimits {
	return &actors.ClassLimits{
		Rps:                       l.RPS,
		Burst:                     uint32(l.Burst),
		RpsPerPrincipal:           l.PrincipalRPS,
		BurstPerPrincipal:         uint32(l.PrincipalBurst),
		Concurrency:               uint32(l.Concurrency),
		ConcurrencyPerPrincipal:   uint32(l.PrincipalConcurrency),
		BytesInFlight:             uint64(l.BytesInFlight),
		BytesInFlightPerPrincipal: uint64(l.PrincipalBytesInFlight),
		RequestBytes:              uint64(l.RequestBytes),
	}
}

// classFromProto converts one class, naming the field of a value that does
// not fit (the protocol's unsigned 64-bit sizes beyond int64).
func classFromProto(prefix string, p *actors.ClassLimits) (ClassLimits, *actors.Error) {
	size := func(name string, v uint64) (int64, *actors.Error) {
		if v > math.MaxInt64 {
			return 0, actors.InvalidArgument(prefix+"."+name, "%d is too large", v)
		}
		return int64(v), nil
	}
	l := ClassLimits{
		RPS:                  p.GetRps(),
		Burst:                int(p.GetBurst()),
		PrincipalRPS:         p.GetRpsPerPrincipal(),
		PrincipalBurst:       int(p.GetBurstPerPrincipal()),
		Concurrency:          int(p.GetConcurrency()),
		PrincipalConcurrency: int(p.GetConcurrencyPerPrincipal()),
	}
	var err *actors.Error
	if l.BytesInFlight, err = size("bytes_in_flight", p.GetBytesInFlight()); err != nil {
		return l, err
	}
	if l.PrincipalBytesInFlight, err = size("bytes_in_flight_per_principal", p.GetBytesInFlightPerPrincipal()); err != nil {
		return l, err
	}
	if l.RequestBytes, err = size("request_bytes", p.GetRequestBytes()); err != nil {
		return l, err
	}
	return l, nil
}

// Apply returns cur changed as req asks: a class present in req.limits
// replaces that class whole, an absent one is kept, and raft_backlog is
// replaced when set_raft_backlog is true. The result is validated; on error
// (INVALID_ARGUMENT naming the field) cur is returned unchanged.
func Apply(cur Config, req *actors.UpdateLimitsRequest) (Config, *actors.Error) {
	if req.GetLimits() == nil {
		return cur, actors.InvalidArgument("limits", "no limits given")
	}
	next := cur
	for cl := Class(0); cl < numClasses; cl++ {
		var p *actors.ClassLimits
		switch cl {
		case ClassRead:
			p = req.Limits.Read
		case ClassWrite:
			p = req.Limits.Write
		case ClassAdmin:
			p = req.Limits.Admin
		}
		if p == nil {
			continue
		}
		l, err := classFromProto("limits."+cl.String(), p)
		if err != nil {
			return cur, err
		}
		*next.Class(cl) = l
	}
	if req.SetRaftBacklog {
		next.RaftBacklog = req.Limits.RaftBacklog
	} else if req.Limits.RaftBacklog != 0 {
		// Ignoring it silently would leave the caller believing the bound
		// changed.
		return cur, actors.InvalidArgument("limits.raft_backlog", "set set_raft_backlog to change it")
	}
	if err := next.Validate(); err != nil {
		return cur, err
	}
	return next, nil
}
