package link

import "sync"

// Call is where an RPC sent on a link waits: Forget tells the connection to
// stop waiting for its answer. The zero value is ready; Set records the
// connection and call number Request gave.
type Call struct {
	mu   sync.Mutex
	conn *Conn
	call uint32
}

// Set records that the RPC went out on c as call.
func (lc *Call) Set(c *Conn, call uint32) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.conn, lc.call = c, call
}

// Forget tells the connection, if the RPC went out on one, that no one
// waits for its answer any more.
func (lc *Call) Forget() {
	lc.mu.Lock()
	c, call := lc.conn, lc.call
	lc.conn = nil
	lc.mu.Unlock()
	if c != nil {
		c.Forget(call)
	}
}
