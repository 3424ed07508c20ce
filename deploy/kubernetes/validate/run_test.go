package validate

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort is a loopback TCP address free at the time of the call.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// writeSelfSigned writes a certificate for localhost and its key as PEM.
func writeSelfSigned(t *testing.T, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// podFiles lays out the tether pod's volumes in dir, as the kubelet would
// mount them: the ConfigMap's keys as files, the admin token, a
// self-signed certificate in place of the TLS Secret. It returns each mount
// path's directory here.
func podFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	s := manifests(t)
	d, c := tetherDeployment(t)
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		var vol *corev1.Volume
		for i := range d.Spec.Template.Spec.Volumes {
			if d.Spec.Template.Spec.Volumes[i].Name == m.Name {
				vol = &d.Spec.Template.Spec.Volumes[i]
			}
		}
		if vol == nil {
			t.Fatalf("volume mount %s has no volume", m.Name)
		}
		here := filepath.Join(dir, m.Name)
		if err := os.MkdirAll(here, 0o700); err != nil {
			t.Fatal(err)
		}
		mounts[strings.TrimSuffix(m.MountPath, "/")] = here
		switch {
		case vol.ConfigMap != nil:
			found := false
			for _, cm := range s.ConfigMaps {
				if cm.Name == vol.ConfigMap.Name {
					found = true
					for k, v := range cm.Data {
						if err := os.WriteFile(filepath.Join(here, k), []byte(v), 0o600); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			if !found {
				t.Fatalf("volume %s: no ConfigMap %s", vol.Name, vol.ConfigMap.Name)
			}
		case vol.Secret != nil && vol.Secret.SecretName == "tether-tls":
			writeSelfSigned(t, filepath.Join(here, corev1.TLSCertKey), filepath.Join(here, corev1.TLSPrivateKeyKey))
		case vol.Secret != nil && vol.Secret.SecretName == "tether-admin-token":
			if err := os.WriteFile(filepath.Join(here, "token"), []byte("test-token\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("volume %s: the test does not know what it holds", vol.Name)
		}
	}
	return mounts
}

// TestTetherServesProbes starts tether as the Deployment does (its args,
// its configuration file, its mounted files), with the listeners moved to
// loopback ports and DNS to a server that never answers, so no node is
// ever up. The probes' paths must answer 200 on the admin listener without
// a token; after SIGTERM, readiness must fail at once while liveness holds
// and the listener still accepts (--drain-delay), and a second SIGTERM
// ends it with status 0.
func TestTetherServesProbes(t *testing.T) {
	bin := tetherBin(t)
	_, c := tetherDeployment(t)
	mounts := podFiles(t, t.TempDir())

	// A DNS server that reads queries and never answers.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	addrs := map[string]string{"listen": freePort(t), "tls-listen": freePort(t), "admin": freePort(t)}
	var args []string
	for _, a := range c.Args {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if addr, ok := addrs[name]; ok {
			a = "--" + name + "=" + addr
		}
		for mount, here := range mounts {
			if rest, ok := strings.CutPrefix(value, mount+"/"); ok {
				a = "--" + name + "=" + filepath.Join(here, rest)
			}
		}
		args = append(args, a)
	}
	args = append(args, "--dns-server="+silent.LocalAddr().String())

	var out syncBuffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed once waitErr is set
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("tether %s\n%s", strings.Join(args, " "), out.String())
		}
	}()

	client := &http.Client{Timeout: 2 * time.Second}
	get := func(path string) (int, error) {
		resp, err := client.Get("http://" + addrs["admin"] + path)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return resp.StatusCode, nil
	}
	// waitFor polls path until it answers want, for at most 15s.
	waitFor := func(path string, want int) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			code, err := get(path)
			if code == want {
				return
			}
			select {
			case <-exited:
				t.Fatalf("tether exited (%v) before %s answered %d", waitErr, path, want)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d %v, want %d within 15s", path, code, err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	ready, live := c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path
	waitFor(live, http.StatusOK)
	waitFor(ready, http.StatusOK) // no node is up: tether itself is ready
	if code, err := get("/status"); err != nil || code != http.StatusUnauthorized {
		t.Errorf("/status without the token: %d %v, want 401 (the token file is read)", code, err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(ready, http.StatusServiceUnavailable)
	if code, err := get(live); err != nil || code != http.StatusOK {
		t.Errorf("%s while draining: %d %v, want 200 (a liveness failure would restart a draining pod)", live, code, err)
	}
	if conn, err := net.DialTimeout("tcp", addrs["listen"], 2*time.Second); err != nil {
		t.Errorf("--listen refuses connections during --drain-delay: %v", err)
	} else {
		conn.Close()
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		var ee *exec.ExitError
		if errors.As(waitErr, &ee) {
			t.Errorf("tether exited with %v after SIGTERM, want 0", waitErr)
		} else if waitErr != nil {
			t.Error(waitErr)
		}
	case <-time.After(45 * time.Second):
		t.Errorf("tether still runs 45s after a second SIGTERM")
	}
}
