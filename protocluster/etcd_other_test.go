//go:build !unix

package protocluster_test

import "testing"

// startEtcd returns "": the comparison starts an etcd server of its own
// only on unix, where the kernel can tie its life to the test's.
func startEtcd(testing.TB) string { return "" }
