//go:build unix && !linux

package proctest

import "os/exec"

// setDeathSignal does nothing where the kernel cannot kill a child with its
// parent; Group.Close still kills every node.
func setDeathSignal(*exec.Cmd) {}
