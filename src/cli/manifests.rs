//! `aiops manifests`: the Kubernetes manifests that run the daemon in a cluster. Its arguments
//! are a struct of their own, so a new flag is one field here.

use std::process::ExitCode;

use anyhow::Result;

/// `aiops manifests`' arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    options: aiops::manifests::Options,
    /// Print only the webhook URL Alertmanager posts to.
    #[arg(long)]
    alertmanager_url_only: bool,
}

/// Prints the manifests (or only the webhook URL).
pub fn run(args: Args) -> Result<ExitCode> {
    Ok(aiops::manifests::print(
        &args.options,
        args.alertmanager_url_only,
    )?)
}
