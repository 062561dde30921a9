//! `aiops manifests`: the Kubernetes manifests that run the daemon in a cluster, or with
//! `--deploy-role` the ClusterRole `aiops deploy` needs. The arguments are
//! [`aiops::manifests::Args`], next to the permission tables they print.

use std::process::ExitCode;

use anyhow::Result;

pub use aiops::manifests::Args;

/// Prints the manifests, only the webhook URL, or the deploy role.
pub fn run(args: Args) -> Result<ExitCode> {
    Ok(args.print()?)
}
