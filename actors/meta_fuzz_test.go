package actors

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// FuzzValidateMeta: request metadata decoded from any bytes is either
// accepted within the documented bounds, refused as DEADLINE_EXCEEDED when
// its deadline has passed, or refused as INVALID_ARGUMENT on a meta field;
// it never panics.
func FuzzValidateMeta(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	for _, m := range []*RequestMeta{
		{},
		{DeadlineUnixNano: now.Add(time.Second).UnixNano()},
		{DeadlineUnixNano: now.Add(-time.Second).UnixNano()},
		{DeadlineUnixNano: now.Add(time.Hour).UnixNano()},
		{DeadlineUnixNano: -1, ClientId: "c", Sequence: 1},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := &RequestMeta{}
		if proto.Unmarshal(data, m) != nil {
			return
		}
		err := ValidateMeta(m, now)
		if err == nil {
			if d := m.GetDeadlineUnixNano(); d != 0 && (d <= now.UnixNano() || time.Duration(d-now.UnixNano()) > MaxRequestTimeout+deadlineSlack) {
				t.Fatalf("deadline %d accepted", d)
			}
			return
		}
		if err.Code == Code_DEADLINE_EXCEEDED {
			if d := m.GetDeadlineUnixNano(); d == 0 || d > now.UnixNano() {
				t.Fatalf("deadline %d refused as passed", d)
			}
			return
		}
		if err.Code != Code_INVALID_ARGUMENT || len(err.Field) < 5 || err.Field[:5] != "meta." {
			t.Fatalf("refusal %v", err)
		}
	})
}
