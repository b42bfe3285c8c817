package remoteguard

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/protoraft/protoraft/internal/mtls"
)

// TLSFiles names the PEM files of a node's mutual TLS identity: its
// certificate and key, and the CA that signs every member's certificate.
type TLSFiles struct {
	CertFile string
	KeyFile  string
	CAFile   string
	// ServerName, when set, is the name every peer's certificate must
	// carry; when empty, the host of the address dialed is checked (IP
	// SANs for 127.0.0.1-style addresses).
	ServerName string
}

// Config loads the files into a tls.Config for MutualTLS.
func (f TLSFiles) Config() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("remoteguard: tls certificate: %w", err)
	}
	pem, err := os.ReadFile(f.CAFile)
	if err != nil {
		return nil, fmt.Errorf("remoteguard: tls CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("remoteguard: tls CA %s holds no PEM certificate", f.CAFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ServerName:   f.ServerName,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// MutualTLS returns the remote options that put the node's endpoint behind
// mutual TLS, for Config: the server demands a client certificate
// signed by cfg.ClientCAs (RootCAs when unset), and every dial presents
// cfg.Certificates and checks the peer against cfg.RootCAs. The dial option
// replaces protoactor's insecure default, so no plaintext connection is
// ever made.
//
// TLS only says the peer holds a certificate of the CA; it does not make
// it a member of the group. Set the cluster key (raftactor.Config.ClusterKey)
// too, so
// a holder of a valid client certificate can neither vote nor append.
func MutualTLS(cfg *tls.Config) ([]remote.ConfigOption, error) {
	server, client, err := mtls.Sides(cfg)
	if err != nil {
		return nil, err
	}
	return []remote.ConfigOption{
		remote.WithServerOptions(grpc.Creds(credentials.NewTLS(server))),
		remote.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(client))),
	}, nil
}
