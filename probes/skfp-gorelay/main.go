// skfp-gorelay: a transparent-proxy relay written the way Go proxies relay (mihomo, sing-box): the
// standard library's net and io.Copy between two *net.TCPConn, which on Linux is splice(2) (Go's
// TCPConn.ReadFrom). For the tests and the bench: it behaves like build/bin/skfp-relay (IP_TRANSPARENT
// listeners, the original destination from the accepted socket's local address, SO_MARK upstream,
// half-close forwarded), only the copy differs.
//
// usage: skfp-gorelay --listen ADDR:PORT [--listen ADDR:PORT ...] [--mark N]
// stdout: {"listening":["127.0.0.1:7070"]} once every listener is up; it runs until SIGTERM/SIGINT,
// then prints {"accepted":N,"upstreamFailed":N,"bytesUp":N,"bytesDown":N} on stderr and exits 0.
// Set-up failures: {"error":"..."} on stdout, exit 2.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

type listens []string

func (l *listens) String() string     { return strings.Join(*l, ",") }
func (l *listens) Set(v string) error { *l = append(*l, v); return nil }

var accepted, upstreamFailed, bytesUp, bytesDown atomic.Int64

func fail(format string, args ...any) {
	out, _ := json.Marshal(map[string]string{"error": fmt.Sprintf(format, args...)})
	fmt.Println(string(out))
	os.Exit(2)
}

// sockopt sets one integer option on the socket before bind or connect.
func sockopt(level, name, value int) func(string, string, syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), level, name, value) }); cerr != nil {
			return cerr
		}
		return err
	}
}

func transparent(network, address string, c syscall.RawConn) error {
	if strings.HasPrefix(address, "[") {
		return sockopt(syscall.SOL_IPV6, 75 /* IPV6_TRANSPARENT */, 1)(network, address, c)
	}
	return sockopt(syscall.SOL_IP, syscall.IP_TRANSPARENT, 1)(network, address, c)
}

// pipe copies src to dst with io.Copy (splice between the two sockets), then half-closes dst.
func pipe(dst, src *net.TCPConn, counter *atomic.Int64, done chan<- struct{}) {
	n, _ := io.Copy(dst, src)
	counter.Add(n)
	dst.CloseWrite()
	done <- struct{}{}
}

func relay(client *net.TCPConn, mark int) {
	defer client.Close()
	accepted.Add(1)
	// the original destination: the interception handed the connection over with it unchanged
	dst := client.LocalAddr().String()
	d := net.Dialer{Timeout: 5 * time.Second, Control: sockopt(syscall.SOL_SOCKET, syscall.SO_MARK, mark)}
	up, err := d.Dial("tcp", dst)
	if err != nil {
		upstreamFailed.Add(1)
		return
	}
	upstream := up.(*net.TCPConn)
	defer upstream.Close()
	done := make(chan struct{}, 2)
	go pipe(upstream, client, &bytesUp, done)
	go pipe(client, upstream, &bytesDown, done)
	<-done
	<-done
}

func main() {
	var addrs listens
	flag.Var(&addrs, "listen", "ADDR:PORT to listen on (repeatable)")
	mark := flag.Int("mark", 0, "SO_MARK of the upstream connections")
	flag.Parse()
	if len(addrs) == 0 {
		fail("--listen ADDR:PORT is required")
	}
	lc := net.ListenConfig{Control: transparent}
	var names []string
	for _, a := range addrs {
		l, err := lc.Listen(context.Background(), "tcp", a)
		if err != nil {
			fail("listen %s: %v", a, err)
		}
		names = append(names, l.Addr().String())
		go func(l net.Listener) {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go relay(c.(*net.TCPConn), *mark)
			}
		}(l)
	}
	out, _ := json.Marshal(map[string][]string{"listening": names})
	fmt.Println(string(out))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	summary, _ := json.Marshal(map[string]int64{"accepted": accepted.Load(), "upstreamFailed": upstreamFailed.Load(), "bytesUp": bytesUp.Load(), "bytesDown": bytesDown.Load()})
	fmt.Fprintln(os.Stderr, string(summary))
}
