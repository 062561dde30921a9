package main

// etcd for the test control plane: a single member embedded through go.etcd.io/etcd/server/v3/embed,
// because etcd's own main is a separate module tree and the embed package is what its tests use.

import (
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func runEtcd(args []string) error {
	fs := flag.NewFlagSet("etcd", flag.ExitOnError)
	dataDir := fs.String("data-dir", "", "etcd data directory")
	clientURL := fs.String("client-url", "", "client URL, http://127.0.0.1:PORT")
	peerURL := fs.String("peer-url", "", "peer URL, http://127.0.0.1:PORT")
	_ = fs.Parse(args)
	if *dataDir == "" || *clientURL == "" || *peerURL == "" {
		return fmt.Errorf("etcd: --data-dir, --client-url and --peer-url are required")
	}
	cu, err := url.Parse(*clientURL)
	if err != nil {
		return err
	}
	pu, err := url.Parse(*peerURL)
	if err != nil {
		return err
	}
	cfg := embed.NewConfig()
	cfg.Name = "kube-env"
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "warn"
	// A throw-away test store: durability buys nothing and fsync on a shared CI disk costs seconds.
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		return fmt.Errorf("etcd did not become ready within 60 s")
	}
	log.Printf("etcd ready on %s", cu)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		log.Printf("etcd: %v, stopping", s)
	case err := <-e.Err():
		return err
	}
	return nil
}
