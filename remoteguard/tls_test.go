package remoteguard

import (
	"crypto/tls"
	"testing"
)

func TestMutualTLSNeedsCertificateAndCA(t *testing.T) {
	if _, err := MutualTLS(nil); err == nil {
		t.Fatal("nil config accepted")
	}
	if _, err := MutualTLS(&tls.Config{Certificates: []tls.Certificate{{}}}); err == nil {
		t.Fatal("config without CA accepted")
	}
	if _, err := (TLSFiles{CertFile: "/nonexistent", KeyFile: "/nonexistent", CAFile: "/nonexistent"}).Config(); err == nil {
		t.Fatal("missing files accepted")
	}
}
