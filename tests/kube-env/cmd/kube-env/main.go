// Command kube-env runs a local Kubernetes control plane for aiops's tests, all on 127.0.0.1
// with ephemeral ports under one directory:
//
//	kube-env supervise --dir DIR --bin-dir BIN [--parent-pid PID]
//	    starts etcd, kube-apiserver (RBAC, token and service-account auth), kube-controller-manager,
//	    kube-scheduler and nodesim (fake Ready nodes), writes DIR/kubeconfig (admin), then
//	    DIR/ready, and stays in the foreground until SIGTERM/SIGINT, a component's exit, or the
//	    death of PID; then stops every component by PID. Components get PR_SET_PDEATHSIG, so
//	    even a SIGKILLed supervisor leaves nothing running.
//	kube-env etcd ...     an embedded single-member etcd (used by supervise)
//	kube-env nodesim ...  the fake kubelet (used by supervise)
//
// scripts/kube-env builds the binaries and wraps supervise as `up` / `down`.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kube-env supervise|etcd|nodesim [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "supervise":
		err = runSupervise(os.Args[2:])
	case "etcd":
		err = runEtcd(os.Args[2:])
	case "nodesim":
		err = runNodesim(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kube-env %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
