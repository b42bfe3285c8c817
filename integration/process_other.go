//go:build unix && !linux

package integration

import "os/exec"

// setDeathSignal does nothing where the kernel cannot kill a child with its
// parent; t.Cleanup still kills every node.
func setDeathSignal(*exec.Cmd) {}
