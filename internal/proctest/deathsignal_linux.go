package proctest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal has the kernel SIGKILL a node's process when the test
// process dies, so that not even a test killed by its timeout (which runs
// no cleanup) leaves a node running.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
