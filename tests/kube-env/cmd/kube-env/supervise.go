package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// component is one process of the control plane.
type component struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

// spawner starts every child from one OS thread that never exits: PR_SET_PDEATHSIG fires when
// the *thread* that forked a child dies, and Go may otherwise retire that thread.
type spawner struct{ reqs chan spawnReq }

type spawnReq struct {
	cmd   *exec.Cmd
	reply chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq)}
	go func() {
		runtime.LockOSThread()
		for r := range s.reqs {
			r.reply <- r.cmd.Start()
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	reply := make(chan error)
	s.reqs <- spawnReq{cmd, reply}
	return <-reply
}

type supervisor struct {
	dir, binDir string
	self        string
	spawner     *spawner
	running     []*component
	exited      chan string
}

func runSupervise(args []string) error {
	fs := flag.NewFlagSet("supervise", flag.ExitOnError)
	dir := fs.String("dir", "", "state directory (certificates, data, logs, kubeconfig)")
	binDir := fs.String("bin-dir", "", "directory holding kube-apiserver, kube-controller-manager, kube-scheduler")
	parentPid := fs.Int("parent-pid", 0, "stop everything when this process is gone (0: never)")
	nodes := fs.Int("nodes", 1, "number of fake nodes")
	version := fs.String("kube-version", "v0.0.0", "version the fake nodes report")
	removeDir := fs.Bool("remove-dir", false, "delete --dir when stopped (throw-away test clusters)")
	_ = fs.Parse(args)
	if *dir == "" {
		return errors.New("--dir is required")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if *binDir == "" {
		*binDir = filepath.Dir(self)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	for _, d := range []string{"logs", "pki"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o755); err != nil {
			return err
		}
	}
	_ = os.Remove(filepath.Join(abs, "ready"))
	// A previous run's etcd data would resurrect its objects; every run starts empty.
	_ = os.RemoveAll(filepath.Join(abs, "etcd"))
	if err := os.WriteFile(filepath.Join(abs, "supervisor.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(filepath.Join(abs, "supervisor.pid"))
	if *removeDir {
		defer os.RemoveAll(abs) // registered after the pid-file removal, so it runs first: harmless
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	s := &supervisor{dir: abs, binDir: *binDir, self: self, spawner: newSpawner(), exited: make(chan string, 8)}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case sg := <-sig:
			log.Printf("%v: stopping", sg)
		case <-watchParent(ctx, *parentPid):
			log.Printf("parent %d is gone: stopping", *parentPid)
		}
		cancel()
	}()

	started := time.Now()
	err = s.up(ctx, *nodes, *version)
	if err == nil {
		log.Printf("control plane ready in %.1fs", time.Since(started).Seconds())
		if werr := writeAtomic(filepath.Join(abs, "ready"), []byte(filepath.Join(abs, "kubeconfig")+"\n")); werr != nil {
			err = werr
		}
	}
	if err == nil {
		select {
		case <-ctx.Done():
		case name := <-s.exited:
			err = fmt.Errorf("%s exited unexpectedly; see %s", name, filepath.Join(abs, "logs", name+".log"))
		}
	}
	s.stopAll()
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// watchParent closes the returned channel when pid no longer exists: the safety net that stops
// the control plane when the test binary that asked for it exits or panics.
func watchParent(ctx context.Context, pid int) <-chan struct{} {
	gone := make(chan struct{})
	if pid <= 0 {
		return gone
	}
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
					close(gone)
					return
				}
			}
		}
	}()
	return gone
}

func (s *supervisor) path(p ...string) string { return filepath.Join(append([]string{s.dir}, p...)...) }

func (s *supervisor) start(name, bin string, args ...string) error {
	logf, err := os.OpenFile(s.path("logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.spawner.start(cmd); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	c := &component{name: name, cmd: cmd, done: make(chan error, 1)}
	s.running = append(s.running, c)
	_ = os.WriteFile(s.path(name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	log.Printf("%s started, pid %d", name, cmd.Process.Pid)
	go func() {
		err := cmd.Wait()
		logf.Close()
		c.done <- err
		s.exited <- name
	}()
	return nil
}

// stopAll stops components in reverse start order: SIGTERM, then SIGKILL after 15 s.
func (s *supervisor) stopAll() {
	for i := len(s.running) - 1; i >= 0; i-- {
		c := s.running[i]
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(15 * time.Second):
			log.Printf("%s ignored SIGTERM for 15 s: SIGKILL", c.name)
			_ = c.cmd.Process.Kill()
			<-c.done
		}
		_ = os.Remove(s.path(c.name + ".pid"))
		log.Printf("%s stopped", c.name)
	}
	s.running = nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *supervisor) up(ctx context.Context, nodes int, version string) error {
	token, err := s.writePKI()
	if err != nil {
		return err
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	if err := s.start("etcd", s.self, "etcd", "--data-dir", s.path("etcd"),
		"--client-url", etcdURL, "--peer-url", fmt.Sprintf("http://127.0.0.1:%d", ports[1])); err != nil {
		return err
	}
	if err := s.waitHTTP(ctx, "etcd", etcdURL+"/health", nil, "", 60*time.Second); err != nil {
		return err
	}

	apiURL := fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	if err := s.start("kube-apiserver", filepath.Join(s.binDir, "kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", ports[2]),
		"--cert-dir="+s.path("pki"),
		"--tls-cert-file="+s.path("pki", "apiserver.crt"),
		"--tls-private-key-file="+s.path("pki", "apiserver.key"),
		"--client-ca-file="+s.path("pki", "ca.crt"),
		"--token-auth-file="+s.path("pki", "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+s.path("pki", "sa.key"),
		"--service-account-signing-key-file="+s.path("pki", "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		// TaintNodesByCondition taints every new node not-ready until the node-lifecycle
		// controller, which watches kubelet heartbeats, clears it; there is no kubelet here.
		"--disable-admission-plugins=TaintNodesByCondition",
		// No kubelet serves the `kubernetes` Service: do not reconcile its endpoints.
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=1",
	); err != nil {
		return err
	}
	caPEM, err := os.ReadFile(s.path("pki", "ca.crt"))
	if err != nil {
		return err
	}
	if err := s.waitHTTP(ctx, "kube-apiserver", apiURL+"/readyz", caPEM, token, 180*time.Second); err != nil {
		return err
	}
	kubeconfig := s.path("kubeconfig")
	if err := writeAtomic(kubeconfig, []byte(kubeconfigYAML(apiURL, caPEM, token))); err != nil {
		return err
	}

	if err := s.start("kube-controller-manager", filepath.Join(s.binDir, "kube-controller-manager"),
		"--kubeconfig="+kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers="+strings.Join([]string{
			"deployment-controller", "replicaset-controller", "statefulset-controller",
			"daemonset-controller", "job-controller", "cronjob-controller",
			"ttl-after-finished-controller", "garbage-collector-controller",
			"namespace-controller", "serviceaccount-controller", "serviceaccount-token-controller",
			"root-ca-certificate-publisher-controller", "pod-garbage-collector-controller",
			"disruption-controller", "endpointslice-controller", "clusterrole-aggregation-controller",
		}, ","),
		"--service-account-private-key-file="+s.path("pki", "sa.key"),
		"--root-ca-file="+s.path("pki", "ca.crt"),
		"--profiling=false",
		"--v=1",
	); err != nil {
		return err
	}
	if err := s.start("kube-scheduler", filepath.Join(s.binDir, "kube-scheduler"),
		"--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig,
		"--authorization-kubeconfig="+kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--profiling=false",
		"--v=1",
	); err != nil {
		return err
	}
	if err := s.start("nodesim", s.self, "nodesim", "--kubeconfig", kubeconfig,
		"--nodes", strconv.Itoa(nodes), "--kubelet-version", version); err != nil {
		return err
	}
	return s.waitCluster(ctx, kubeconfig, nodes)
}

// waitHTTP polls url until it answers 200, a component exits, or the deadline passes.
func (s *supervisor) waitHTTP(ctx context.Context, name, url string, caPEM []byte, token string, limit time.Duration) error {
	tr := &http.Transport{}
	if caPEM != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	deadline := time.Now().Add(limit)
	last := ""
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				log.Printf("%s ready", name)
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case n := <-s.exited:
			return fmt.Errorf("%s exited while starting; see %s", n, s.path("logs", n+".log"))
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after %s (last: %s); see %s", name, limit, last, s.path("logs", name+".log"))
}

// waitCluster waits until pods can run: every fake node Ready, and the `default` ServiceAccount
// present (the ServiceAccount admission plugin rejects pods until the controller made it).
func (s *supervisor) waitCluster(ctx context.Context, kubeconfig string, nodes int) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(120 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ready := 0
		list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, n := range list.Items {
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
		}
		_, saErr := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if ready >= nodes && saErr == nil {
			log.Printf("%d node(s) Ready, default ServiceAccount present", ready)
			return nil
		}
		last = fmt.Sprintf("%d/%d nodes Ready, default ServiceAccount: %v", ready, nodes, saErr)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case n := <-s.exited:
			return fmt.Errorf("%s exited while starting; see %s", n, s.path("logs", n+".log"))
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("cluster not ready after 120 s: %s", last)
}

// writePKI creates a CA, the API server's serving certificate (127.0.0.1, localhost), the
// service-account signing key and the admin token; returns the token.
func (s *supervisor) writePKI() (string, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "aiops-kube-env-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return "", err
	}
	token := hex.EncodeToString(tok)
	ecPEM := func(k *ecdsa.PrivateKey) []byte {
		der, _ := x509.MarshalECPrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	files := map[string][]byte{
		"ca.crt":        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		"apiserver.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		"apiserver.key": ecPEM(srvKey),
		"sa.key":        pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
		// The admin is in system:masters; controllers and the scheduler use the same credential
		// (a test cluster: their own identities would add nothing the tests look at).
		"tokens.csv": []byte(token + `,kube-env-admin,kube-env-admin,"system:masters"` + "\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(s.path("pki", name), data, 0o600); err != nil {
			return "", err
		}
	}
	return token, nil
}

func kubeconfigYAML(server string, caPEM []byte, token string) string {
	b64 := func(b []byte) string {
		return base64.StdEncoding.EncodeToString(b)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kube-env
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: kube-env-admin
  user:
    token: %s
contexts:
- name: kube-env
  context:
    cluster: kube-env
    user: kube-env-admin
current-context: kube-env
`, server, b64(caPEM), token)
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
