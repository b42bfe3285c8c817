package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/protoraft/protoraft/actors"
	"github.com/protoraft/protoraft/policies"
	"github.com/protoraft/protoraft/remoteguard"
)

// A secrets directory holds what the nodes of one group need to trust each
// other and what an operator needs to call them, in files named by
// convention, so that --secrets DIR is all a node's command line says:
//
//	ca.pem, ca-key.pem     the group's certificate authority
//	<id>.pem, <id>-key.pem node <id>'s certificate (server and client), signed by the CA
//	operator.pem, operator-key.pem
//	                       the certificate an operator's tools (protoraftctl) present: they
//	                       run a remote endpoint of their own, which the nodes answer on
//	cluster.key            the cluster key, hex; every Raft RPC carries its MAC
//	admin.token            a bearer token with every permission
//	node.token             the token nodes present when they join: only what Join needs
//	policy.yaml            the security policy with the principals of both tokens
//
// `kv certs` makes one for development; production brings its own CA and
// names the files with --tls-cert, --tls-key, --tls-ca, --cluster-key-file
// and --policy instead.
const (
	caCertFile     = "ca.pem"
	caKeyFile      = "ca-key.pem"
	clusterKeyFile = "cluster.key"
	adminTokenFile = "admin.token"
	nodeTokenFile  = "node.token"
	policyFile     = "policy.yaml"
	// operatorName is the name of the operator's certificate files; no
	// node may take it as its ID.
	operatorName = "operator"
)

// certValidity is how long the certificates of a development secrets
// directory are valid.
const certValidity = 365 * 24 * time.Hour

// nodeRoles are the permissions of node.token at the front doors: what
// Join asks for (see cluster.Config.Credentials), nothing that reads or
// writes data.
var nodeRoles = []string{"status", "leader", "members", "add_nonvoter", "promote"}

// nodeFiles are the certificate and key file of node id in dir.
func nodeFiles(dir, id string) (cert, key string) {
	return filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem")
}

// runCerts is `kv certs`: it creates, or completes, a development secrets
// directory. What exists is kept, so adding a node later (--nodes n4)
// signs its certificate with the same CA and keeps the key and token.
func runCerts(args []string, out, errOut io.Writer) error {
	fs := flag.NewFlagSet("kv certs", flag.ContinueOnError)
	fs.SetOutput(errOut)
	dir := fs.String("dir", "", "secrets directory to create or complete (required)")
	nodes := fs.String("nodes", "n1,n2,n3", "node IDs to issue certificates for, comma-separated")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "IP addresses and DNS names the nodes' certificates are valid for, comma-separated")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: kv certs --dir DIR [--nodes n1,n2,n3] [--hosts 127.0.0.1,localhost]\n\n"+
			"Creates a development CA, a certificate per node and one for the operator (protoraftctl),\n"+
			"a cluster key, an admin token and a policy in DIR; files that exist are kept. Then start\n"+
			"every node with --secrets DIR.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *dir == "" {
		return errors.New("certs: --dir is required")
	}
	var ids []string
	for i, id := range strings.Split(*nodes, ",") {
		id = strings.TrimSpace(id)
		if err := actors.ValidateNodeID(fmt.Sprintf("--nodes[%d]", i), id); err != nil {
			return err
		}
		if id == operatorName {
			return fmt.Errorf("certs: --nodes[%d]: %q names the operator's certificate, not a node", i, id)
		}
		ids = append(ids, id)
	}
	var ips []net.IP
	var names []string
	for _, h := range strings.Split(*hosts, ",") {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else if h != "" {
			names = append(names, h)
		}
	}
	s := &secretsMaker{dir: *dir, out: out}
	return s.make(ids, ips, names)
}

// secretsMaker writes a development secrets directory.
type secretsMaker struct {
	dir string
	out io.Writer
}

func (s *secretsMaker) make(ids []string, ips []net.IP, names []string) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	ca, caKey, err := s.authority()
	if err != nil {
		return err
	}
	// The operator's certificate is issued like a node's: its tools
	// both dial the nodes and are dialed back by them.
	for _, id := range append(ids, operatorName) {
		if err := s.node(id, ca, caKey, ips, names); err != nil {
			return err
		}
	}
	if err := s.create(clusterKeyFile, func() ([]byte, error) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		return []byte(hex.EncodeToString(key) + "\n"), nil
	}); err != nil {
		return err
	}
	for _, name := range []string{adminTokenFile, nodeTokenFile} {
		if err := s.create(name, func() ([]byte, error) {
			tok, err := policies.NewToken()
			return []byte(tok + "\n"), err
		}); err != nil {
			return err
		}
	}
	return s.create(policyFile, s.policy)
}

// authority loads the directory's CA, creating it first when there is none.
func (s *secretsMaker) authority() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(s.dir, caCertFile), filepath.Join(s.dir, caKeyFile)
	if _, err := os.Stat(certPath); errors.Is(err, fs.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("certs: %w", err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          serial(),
			Subject:               pkix.Name{CommonName: "protoraft kv development CA"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(certValidity),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return nil, nil, fmt.Errorf("certs: %w", err)
		}
		if err := s.writePair(caCertFile, caKeyFile, der, key); err != nil {
			return nil, nil, err
		}
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: the CA in %s: %w", s.dir, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("certs: the CA key %s is not an ECDSA key", keyPath)
	}
	return pair.Leaf, key, nil
}

// node issues node id's certificate, unless it has one.
func (s *secretsMaker) node(id string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, ips []net.IP, names []string) error {
	certPath, _ := nodeFiles(s.dir, id)
	if _, err := os.Stat(certPath); err == nil {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: id, Organization: []string{"protoraft kv"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// One certificate for both sides: a node accepts connections from
		// its peers and dials them.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: ips,
		DNSNames:    names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return s.writePair(id+".pem", id+"-key.pem", der, key)
}

// policy is policy.yaml: the principals of the admin and the node token.
func (s *secretsMaker) policy() ([]byte, error) {
	admin, err := readSecret(filepath.Join(s.dir, adminTokenFile))
	if err != nil {
		return nil, err
	}
	node, err := readSecret(filepath.Join(s.dir, nodeTokenFile))
	if err != nil {
		return nil, err
	}
	doc := fmt.Appendf(nil, `# Written by kv certs. Change it at run time through Raft (a PolicyUpdateRequest),
# and keep this file in step: a restarting node enforces it until it has caught up.
version: 1
roles:
  admin: ["*"]
  node: [%s]
principals:
  - name: admin
    token_sha256: %s
    roles: [admin]
  - name: nodes
    token_sha256: %s
    roles: [node]
`, strings.Join(nodeRoles, ", "), policies.HashToken(string(admin)), policies.HashToken(string(node)))
	if _, err := policies.Parse(doc); err != nil {
		return nil, fmt.Errorf("the policy written is not valid: %w", err)
	}
	return doc, nil
}

// create writes name with what gen makes, unless it exists.
func (s *secretsMaker) create(name string, gen func() ([]byte, error)) error {
	if _, err := os.Stat(filepath.Join(s.dir, name)); err == nil {
		return nil
	}
	b, err := gen()
	if err != nil {
		return fmt.Errorf("certs: %s: %w", name, err)
	}
	return s.write(name, b)
}

// writePair writes a certificate and its key in PEM.
func (s *secretsMaker) writePair(certName, keyName string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := s.write(keyName, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})); err != nil {
		return err
	}
	return s.write(certName, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// write writes one file readable by its owner only, and says so.
func (s *secretsMaker) write(name string, b []byte) error {
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	fmt.Fprintln(s.out, "wrote", path)
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on the platforms Go supports
	}
	return n
}

// readSecret reads a secret file, without the surrounding white space an
// editor or echo adds.
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return bytes.TrimSpace(b), nil
}

// security is what a process-mode node protects itself with: mutual TLS
// for remote and the link, the cluster key, and the policy at its front
// door. The zero value is --insecure.
type security struct {
	tls        *tls.Config
	clusterKey []byte
	policy     string
	// credentials is the token the node presents when it joins.
	credentials string
}

// securityFiles are the flags that name a node's secrets.
type securityFiles struct {
	secrets                              string
	cert, key, ca, clusterKey, nodeToken string
	insecure                             bool
	policySet                            bool
}

// resolve fills the file names --secrets implies, for node id, and checks
// that a process-mode node is either secured or explicitly insecure.
func (f *securityFiles) resolve(id string, policy *string) error {
	if f.secrets != "" {
		cert, key := nodeFiles(f.secrets, id)
		f.cert = orDefault(f.cert, cert)
		f.key = orDefault(f.key, key)
		f.ca = orDefault(f.ca, filepath.Join(f.secrets, caCertFile))
		f.clusterKey = orDefault(f.clusterKey, filepath.Join(f.secrets, clusterKeyFile))
		f.nodeToken = orDefault(f.nodeToken, filepath.Join(f.secrets, nodeTokenFile))
		if !f.policySet {
			*policy = filepath.Join(f.secrets, policyFile)
		}
	}
	tlsSet := f.cert != "" || f.key != "" || f.ca != ""
	switch {
	case f.insecure && (tlsSet || f.clusterKey != ""):
		return errors.New("--insecure excludes --secrets, --tls-* and --cluster-key-file")
	case f.insecure:
		return nil
	case f.cert == "" || f.key == "" || f.ca == "" || f.clusterKey == "":
		return errors.New("one node per process needs mutual TLS and a cluster key, or else an explicit --insecure:\n" +
			"  kv certs --dir DIR --nodes n1,n2,n3     # once: a development CA, certificates, key, token, policy\n" +
			"  kv --secrets DIR --id n1 ...            # every node\n" +
			"or name your own files with --tls-cert, --tls-key, --tls-ca and --cluster-key-file")
	}
	return nil
}

// load reads the files resolve settled on.
func (f *securityFiles) load(policy string) (security, error) {
	var credentials string
	if f.nodeToken != "" {
		tok, err := readSecret(f.nodeToken)
		if err != nil {
			return security{}, fmt.Errorf("node token: %w", err)
		}
		credentials = string(tok)
	}
	if f.insecure {
		return security{policy: policy, credentials: credentials}, nil
	}
	cfg, err := remoteguard.TLSFiles{CertFile: f.cert, KeyFile: f.key, CAFile: f.ca}.Config()
	if err != nil {
		return security{}, err
	}
	key, err := readSecret(f.clusterKey)
	if err != nil {
		return security{}, fmt.Errorf("cluster key: %w", err)
	}
	if raw, err := hex.DecodeString(string(key)); err == nil {
		key = raw
	}
	return security{tls: cfg, clusterKey: key, policy: policy, credentials: credentials}, nil
}

func orDefault(s, def string) string {
	if s != "" {
		return s
	}
	return def
}
