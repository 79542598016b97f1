package testutil

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SeaweedVersion is the SeaweedFS module version formats/neutral/ci-setup.sh
// builds weed from and caches it under.
const SeaweedVersion = "v0.0.0-20261109003541-7506e5f91cd6"

// WeedPath returns the weed binary: $VMCONV_WEED, or the one ci-setup.sh
// cached. It is "" when there is none.
func WeedPath() string {
	if p := os.Getenv("VMCONV_WEED"); p != "" {
		return p
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		cache = filepath.Join(home, ".cache")
	}
	p := filepath.Join(cache, "vmconv", "seaweedfs", SeaweedVersion, "weed")
	if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
		return ""
	}
	return p
}

// Seaweed is a running `weed server` with its S3 gateway, on loopback ports
// of its own, keeping its data under a directory.
type Seaweed struct {
	// Endpoint is the S3 gateway's URL, http://127.0.0.1:PORT.
	Endpoint string
	cmd      *exec.Cmd
	exited   chan struct{}
	logPath  string
	sockets  []string
}

// StartSeaweed starts weed (the binary at weed) with its data and log under
// dir, and returns once its S3 gateway answers. Stop it with Stop.
func StartSeaweed(weed, dir string) (*Seaweed, error) {
	ports, err := freePorts(8)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "weed.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	p := func(i int) string { return strconv.Itoa(ports[i]) }
	cmd := exec.Command(weed, "server", "-dir="+data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port="+p(0), "-master.port.grpc="+p(1), "-volume.port="+p(2), "-volume.port.grpc="+p(3),
		"-filer.port="+p(4), "-filer.port.grpc="+p(5), "-s3", "-s3.port="+p(6), "-s3.port.grpc="+p(7),
		"-s3.port.iceberg=0", "-master.telemetry=false", "-volume.max=64", "-master.volumeSizeLimitMB=256",
		"-filer.localSocket="+filepath.Join(dir, "filer.sock"), "-s3.localSocket="+filepath.Join(dir, "s3.sock"))
	cmd.Stdout, cmd.Stderr = logf, logf
	// weed takes AWS_ACCESS_KEY_ID and the like as an identity, which
	// turns anonymous access off; it gets none, and accepts any signature.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// Its own process group, so Stop reaches every process it starts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", weed, err)
	}
	s := &Seaweed{Endpoint: "http://127.0.0.1:" + p(6), cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	// weed puts its gRPC sockets in /tmp whatever it is told; Stop removes them.
	for name, i := range map[string]int{"master": 1, "volume": 3, "filer": 5} {
		s.sockets = append(s.sockets, fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", name, ports[i]))
	}
	go func() { cmd.Wait(); close(s.exited) }()
	if err := s.waitS3(90 * time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// waitS3 waits until the gateway can store an object: a bucket made and an
// object put in it (the volume servers take a while after S3 answers).
func (s *Seaweed) waitS3(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("weed exited while starting; its log: %s", s.logTail())
		default:
		}
		if last = s.put("/vmconv-ready"); last == nil {
			if last = s.put("/vmconv-ready/probe"); last == nil {
				return nil
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("weed's S3 gateway %s not ready after %v: %v; its log: %s", s.Endpoint, limit, last, s.logTail())
}

// CreateBucket makes a bucket (an anonymous S3 PUT, which weed allows while
// it has no identities configured).
func (s *Seaweed) CreateBucket(name string) error { return s.put("/" + name) }

func (s *Seaweed) put(path string) error {
	req, err := http.NewRequest(http.MethodPut, s.Endpoint+path, bytes.NewReader(nil))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT %s: %s", path, resp.Status)
	}
	return nil
}

func (s *Seaweed) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Stop ends weed and every process it started, and waits for it.
func (s *Seaweed) Stop() {
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
	for _, p := range s.sockets {
		os.Remove(p)
	}
}

// freePorts returns n loopback TCP ports free at the time of the call.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
