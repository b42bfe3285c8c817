package limiter

import (
	"fmt"
	"testing"
	"time"
)

// benchConfig limits every dimension, so the allow path does all its work;
// the rates are high enough that nothing is refused.
var benchConfig = Config{
	Write: ClassLimits{
		RPS: 1e12, PrincipalRPS: 1e12,
		Concurrency: 1 << 20, PrincipalConcurrency: 1 << 20,
		BytesInFlight: 1 << 40, PrincipalBytesInFlight: 1 << 40,
		RequestBytes: 1 << 20,
	},
	RaftBacklog: 1 << 20,
}

// BenchmarkAllow is one admitted request: Acquire and its Release, with
// every limit of the class on, spread over 64 principals.
func BenchmarkAllow(b *testing.B) {
	l := New(benchConfig)
	names := make([]string, 64)
	for i := range names {
		names[i] = fmt.Sprintf("principal-%d", i)
	}
	deadline := time.Now().Add(time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		p, err := l.Acquire(names[i&63], ClassWrite, 128, deadline)
		if err != nil {
			b.Fatal(err)
		}
		l.Release(p)
	}
}

// BenchmarkAllowParallel is BenchmarkAllow from every core at once: the
// cost of the one mutex under contention.
func BenchmarkAllowParallel(b *testing.B) {
	l := New(benchConfig)
	deadline := time.Now().Add(time.Hour)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := l.Acquire("alice", ClassWrite, 128, deadline)
			if err != nil {
				b.Fatal(err)
			}
			l.Release(p)
		}
	})
}

// BenchmarkAllowUnlimited is the allow path with no limits set.
func BenchmarkAllowUnlimited(b *testing.B) {
	l := New(Config{})
	deadline := time.Now().Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		p, _ := l.Acquire("alice", ClassRead, 128, deadline)
		l.Release(p)
	}
}
