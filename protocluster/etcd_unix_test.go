//go:build unix

package protocluster_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/protoraft/protoraft/internal/proctest"
)

// etcdBinary is the etcd server the comparison runs against: the path in
// PROTOCLUSTER_ETCD, else /usr/bin/etcd (Debian's etcd-server package),
// else etcd on PATH; "" when there is none.
func etcdBinary() string {
	if p := os.Getenv("PROTOCLUSTER_ETCD"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd"
	}
	p, _ := exec.LookPath("etcd")
	return p
}

// startEtcd runs a one-member etcd server of its own for the test, with a
// temporary data directory, on two loopback ports free a moment ago, and
// returns its client address (host:port) once it reports healthy. The
// server is killed in the test's cleanup, and by the kernel if the test
// process dies first. It returns "" when there is no etcd binary.
func startEtcd(t testing.TB) string {
	t.Helper()
	bin := etcdBinary()
	if bin == "" {
		return ""
	}
	dir := t.TempDir()
	ports := freePorts(t, 2)
	client := fmt.Sprintf("127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cmd := exec.Command(bin,
		"--name", "m1",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", "http://"+client,
		"--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "m1="+peer,
		"--initial-cluster-state", "new",
		"--logger", "zap",
		"--log-level", "warn",
	)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	proctest.DieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("etcd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	hc := &http.Client{Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("etcd exited before it answered:\n%s", out.String())
		default:
		}
		if res, err := hc.Get("http://" + client + "/health"); err == nil {
			var body bytes.Buffer
			_, _ = body.ReadFrom(res.Body)
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK && strings.Contains(body.String(), `"true"`) {
				return client
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not report healthy within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
