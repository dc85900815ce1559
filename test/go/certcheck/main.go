// certcheck reads the certificates hook-runner made with Go's own crypto/x509 and crypto/tls: the
// parser and verifier of the kube-apiserver, the kubelet, kubectl and cert-manager, which are
// stricter than OpenSSL and Node (issue 10: a PrintableString holding '@' is fine for Node and
// fatal for Go). Standard library only; built by the tests with GO111MODULE=off, nothing fetched.
//
// Input on stdin (JSON):
//
//	{"parse":     [{"name": "...", "pem": "...", "role": "ca"|"serving"|""}],
//	 "verify":    [{"name": "...", "roots": "PEM", "leaf": "PEM", "dnsNames": ["..."]}],
//	 "handshake": [{"name": "...", "addr": "127.0.0.1:PORT", "roots": "PEM", "serverName": "..."}]}
//
// Output on stdout (JSON): {"ok": bool, "results": [{"check", "name", "ok", "error", "detail"}]}.
// Exit 0 when every check passed, 1 when any failed, 2 when the input itself is unusable.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

type parseReq struct {
	Name string `json:"name"`
	PEM  string `json:"pem"`
	// "ca": every certificate must be a CA fit to sign serving certificates; "serving": the first
	// must be a TLS server certificate. Empty: parse only.
	Role string `json:"role"`
}

type verifyReq struct {
	Name     string   `json:"name"`
	Roots    string   `json:"roots"`
	Leaf     string   `json:"leaf"`
	DNSNames []string `json:"dnsNames"`
}

type handshakeReq struct {
	Name       string `json:"name"`
	Addr       string `json:"addr"`
	Roots      string `json:"roots"`
	ServerName string `json:"serverName"`
}

type input struct {
	Parse     []parseReq     `json:"parse"`
	Verify    []verifyReq    `json:"verify"`
	Handshake []handshakeReq `json:"handshake"`
}

type result struct {
	Check  string `json:"check"`
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// parseAll parses every PEM block strictly, as client-go's cert.ParseCertsPEM does for a caBundle:
// one bad block fails the whole bundle (x509.CertPool.AppendCertsFromPEM would skip it silently).
func parseAll(text string) ([]*x509.Certificate, error) {
	rest := []byte(text)
	var certs []*x509.Certificate
	for i := 0; ; i++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d: type %q, expected CERTIFICATE", i, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", i, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}

func pool(text string) (*x509.CertPool, error) {
	certs, err := parseAll(text)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p, nil
}

// strictness checks what Go's parser lets through but RFC 5280 and newer Go releases do not:
// a serial that is positive and at most 20 octets, a validity window, and the CA or server shape.
func strictness(i int, c *x509.Certificate, role string, now time.Time) error {
	at := fmt.Sprintf("certificate %d (%s)", i, c.Subject)
	if c.SerialNumber == nil || c.SerialNumber.Sign() <= 0 {
		return fmt.Errorf("%s: serial number must be positive, got %v", at, c.SerialNumber)
	}
	// 20 octets in DER, sign byte included (RFC 5280 4.1.2.2).
	if n := len(c.SerialNumber.Bytes()); n > 20 || (n == 20 && c.SerialNumber.Bytes()[0]&0x80 != 0) {
		return fmt.Errorf("%s: serial number longer than 20 octets", at)
	}
	if c.Version != 3 {
		return fmt.Errorf("%s: version %d, expected 3 (extensions need v3)", at, c.Version)
	}
	if !c.NotBefore.Before(c.NotAfter) {
		return fmt.Errorf("%s: notBefore %v is not before notAfter %v", at, c.NotBefore, c.NotAfter)
	}
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return fmt.Errorf("%s: not valid now (%v): valid %v to %v", at, now.UTC(), c.NotBefore.UTC(), c.NotAfter.UTC())
	}
	switch role {
	case "ca":
		if !c.BasicConstraintsValid || !c.IsCA {
			return fmt.Errorf("%s: not a CA (basicConstraints cA=true expected)", at)
		}
		if c.KeyUsage&x509.KeyUsageCertSign == 0 {
			return fmt.Errorf("%s: keyUsage lacks keyCertSign", at)
		}
		if len(c.SubjectKeyId) == 0 {
			return fmt.Errorf("%s: no subjectKeyIdentifier", at)
		}
	case "serving":
		if i > 0 {
			break
		}
		if c.IsCA {
			return fmt.Errorf("%s: a serving certificate must not be a CA", at)
		}
		if len(c.DNSNames) == 0 {
			return fmt.Errorf("%s: no DNS subjectAltName (Go ignores the common name)", at)
		}
		server := false
		for _, u := range c.ExtKeyUsage {
			server = server || u == x509.ExtKeyUsageServerAuth
		}
		if !server {
			return fmt.Errorf("%s: extKeyUsage lacks serverAuth", at)
		}
		if c.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
			return fmt.Errorf("%s: keyUsage lacks digitalSignature (needed for ECDHE-RSA)", at)
		}
	case "":
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	return nil
}

func doParse(r parseReq, now time.Time) result {
	res := result{Check: "parse", Name: r.Name}
	certs, err := parseAll(r.PEM)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	for i, c := range certs {
		if err := strictness(i, c, r.Role, now); err != nil {
			res.Error = err.Error()
			return res
		}
	}
	res.OK = true
	res.Detail = fmt.Sprintf("%d certificate(s); first: subject %q, serial %x", len(certs), certs[0].Subject.String(), certs[0].SerialNumber)
	return res
}

func doVerify(r verifyReq, now time.Time) result {
	res := result{Check: "verify", Name: r.Name}
	roots, err := pool(r.Roots)
	if err != nil {
		res.Error = "roots: " + err.Error()
		return res
	}
	leaves, err := parseAll(r.Leaf)
	if err != nil {
		res.Error = "leaf: " + err.Error()
		return res
	}
	if len(r.DNSNames) == 0 {
		res.Error = "no dnsNames to verify"
		return res
	}
	inter := x509.NewCertPool()
	for _, c := range leaves[1:] {
		inter.AddCert(c)
	}
	for _, name := range r.DNSNames {
		_, err := leaves[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			res.Error = fmt.Sprintf("%s: %v", name, err)
			return res
		}
	}
	res.OK = true
	res.Detail = fmt.Sprintf("verified for %v", r.DNSNames)
	return res
}

// doHandshake connects as the API server does to a webhook: verified TLS against the caBundle,
// ServerName <svc>.<ns>.svc. The kubelet's HTTPS probe parses the served chain the same way.
func doHandshake(r handshakeReq) result {
	res := result{Check: "handshake", Name: r.Name}
	roots, err := pool(r.Roots)
	if err != nil {
		res.Error = "roots: " + err.Error()
		return res
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", r.Addr, &tls.Config{RootCAs: roots, ServerName: r.ServerName, MinVersion: tls.VersionTLS12})
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer conn.Close()
	st := conn.ConnectionState()
	res.OK = true
	res.Detail = fmt.Sprintf("%s, serial %x", tls.CipherSuiteName(st.CipherSuite), st.PeerCertificates[0].SerialNumber)
	return res
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "certcheck: reading stdin:", err)
		os.Exit(2)
	}
	var in input
	if err := json.Unmarshal(raw, &in); err != nil {
		fmt.Fprintln(os.Stderr, "certcheck: stdin is not the expected JSON:", err)
		os.Exit(2)
	}
	if len(in.Parse)+len(in.Verify)+len(in.Handshake) == 0 {
		fmt.Fprintln(os.Stderr, "certcheck: nothing to check")
		os.Exit(2)
	}
	now := time.Now()
	var out struct {
		OK      bool     `json:"ok"`
		Results []result `json:"results"`
	}
	for _, r := range in.Parse {
		out.Results = append(out.Results, doParse(r, now))
	}
	for _, r := range in.Verify {
		out.Results = append(out.Results, doVerify(r, now))
	}
	for _, r := range in.Handshake {
		out.Results = append(out.Results, doHandshake(r))
	}
	out.OK = true
	for _, r := range out.Results {
		out.OK = out.OK && r.OK
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		os.Exit(2)
	}
	if !out.OK {
		os.Exit(1)
	}
}
