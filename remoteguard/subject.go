package remoteguard

import (
	"context"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/protoraft/protoraft/actors"
)

// peerSubject returns the subject of the connection's verified TLS client certificate, in the
// RFC 2253 form of pkix.Name.String, or "" when the connection is not TLS or its client
// presented no certificate that verified. Only a verified chain counts: PeerCertificates
// alone is whatever the client sent.
func peerSubject(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return ""
	}
	var info credentials.TLSInfo
	switch a := p.AuthInfo.(type) {
	case credentials.TLSInfo:
		info = a
	case *credentials.TLSInfo:
		if a == nil {
			return ""
		}
		info = *a
	default:
		return ""
	}
	chains := info.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 || chains[0][0] == nil {
		return ""
	}
	return chains[0][0].Subject.String()
}

// stampPeerSubject overwrites the actors.HeaderPeerSubject header of every envelope with
// subject, or deletes it when subject is "" (no verified client certificate), so whatever the
// sender put there never reaches an actor.
func stampPeerSubject(b *remote.MessageBatch, subject string) {
	for _, e := range b.GetEnvelopes() {
		if subject == "" {
			if e.MessageHeader != nil {
				delete(e.MessageHeader.HeaderData, actors.HeaderPeerSubject)
			}
			continue
		}
		if e.MessageHeader == nil {
			e.MessageHeader = &remote.MessageHeader{}
		}
		if e.MessageHeader.HeaderData == nil {
			e.MessageHeader.HeaderData = map[string]string{}
		}
		e.MessageHeader.HeaderData[actors.HeaderPeerSubject] = subject
	}
}
