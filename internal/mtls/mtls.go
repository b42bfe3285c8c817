// Package mtls derives, from one node's mutual TLS identity, the two TLS
// configurations a carrier needs: the one that accepts peers and the one
// that dials them. Protoactor remote (remoteguard.MutualTLS) and the Raft
// link use the same rules through it, so neither can be weaker than the
// other.
//
// It must never import another package of this module, or do I/O.
package mtls

import (
	"crypto/tls"
	"errors"
)

// Sides derives, from one node's mutual TLS identity, the configuration
// that accepts peers (a client certificate signed by ClientCAs, RootCAs when
// unset, is required) and the one that dials them (the peer checked against
// RootCAs, ClientCAs when unset), both at TLS 1.2 or later.
func Sides(cfg *tls.Config) (server, client *tls.Config, err error) {
	if cfg == nil || len(cfg.Certificates) == 0 && cfg.GetCertificate == nil {
		return nil, nil, errors.New("mutual TLS needs this node's certificate")
	}
	if cfg.RootCAs == nil && cfg.ClientCAs == nil {
		return nil, nil, errors.New("mutual TLS needs the CA of the group's certificates")
	}
	server = cfg.Clone()
	server.ClientAuth = tls.RequireAndVerifyClientCert
	if server.ClientCAs == nil {
		server.ClientCAs = server.RootCAs
	}
	client = cfg.Clone()
	if client.RootCAs == nil {
		client.RootCAs = client.ClientCAs
	}
	for _, c := range []*tls.Config{server, client} {
		if c.MinVersion < tls.VersionTLS12 {
			c.MinVersion = tls.VersionTLS12
		}
	}
	return server, client, nil
}
