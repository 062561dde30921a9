// kubectl for a machine that has none: the upstream command (k8s.io/kubectl) at the version of
// the test control plane (tests/kube-env), built by `scripts/kube-env kubectl` so that the
// README's kubectl examples (tests/readme.rs) run in CI on any machine.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"

	// Credential plugins (exec, OIDC) as in the released kubectl.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	os.Exit(cli.Run(cmd.NewDefaultKubectlCommand()))
}
