package main

import (
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/protoraft/protoraft/policies"
)

// kv certs makes everything --secrets needs; run again with another node
// it adds that node's certificate, signed by the same CA, and keeps the
// cluster key, the tokens and the policy.
func TestCertsMakesAndCompletesASecretsDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	if err := runCerts([]string{"--dir", dir, "--nodes", "n1,n2,n3"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	kept := map[string]string{}
	for _, name := range []string{caCertFile, clusterKeyFile, adminTokenFile, nodeTokenFile, policyFile, "n1.pem", "operator.pem", "operator-key.pem"} {
		kept[name] = read(name)
	}
	if err := runCerts([]string{"--dir", dir, "--nodes", "n4"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := runCerts([]string{"--dir", dir, "--nodes", "operator"}, io.Discard, io.Discard); err == nil {
		t.Error("kv certs issued a node certificate under the operator's name")
	}
	for name, before := range kept {
		if read(name) != before {
			t.Errorf("%s changed when n4 was added", name)
		}
	}
	p, err := policies.Parse([]byte(read(policyFile)))
	if err != nil {
		t.Fatal(err)
	}
	admin, aerr := p.Authenticate(strings.TrimSpace(read(adminTokenFile)))
	node, nerr := p.Authenticate(strings.TrimSpace(read(nodeTokenFile)))
	if aerr != nil || nerr != nil || !p.Allowed(admin, "write") || p.Allowed(node, "write") || !p.Allowed(node, "add_nonvoter") {
		t.Fatalf("admin %q (%v) and node %q (%v) tokens: wrong permissions", admin, aerr, node, nerr)
	}

	for _, id := range []string{"n1", "n4"} {
		var f securityFiles
		f.secrets = dir
		var policy string
		if err := f.resolve(id, &policy); err != nil {
			t.Fatal(err)
		}
		sec, err := f.load(policy)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if len(sec.clusterKey) != 32 || sec.tls == nil || sec.credentials == "" || policy != filepath.Join(dir, policyFile) {
			t.Fatalf("%s: key of %d bytes, tls %v, credentials %q, policy %s", id, len(sec.clusterKey), sec.tls != nil, sec.credentials, policy)
		}
		leaf := sec.tls.Certificates[0].Leaf
		if _, err := leaf.Verify(verifyAgainst(t, dir)); err != nil {
			t.Fatalf("%s's certificate is not signed by the directory's CA: %v", id, err)
		}
	}
}

// verifyAgainst are options that verify a client and server certificate
// against dir's CA.
func verifyAgainst(t *testing.T, dir string) x509.VerifyOptions {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatal("no CA certificate")
	}
	return x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
}
