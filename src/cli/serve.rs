//! `aiops serve`: the daemon ([`aiops::daemon::run`]) with the process's signals wired in.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use aiops::config::Settings;

/// Runs the daemon until SIGTERM or SIGINT; SIGHUP reloads rules and playbooks.
pub async fn run(config: Option<&Path>) -> Result<ExitCode> {
    let settings = Settings::load(config)?;
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let shutdown = signals(reload_tx)?;
    aiops::daemon::run(settings, shutdown, reload_rx).await?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGTERM or SIGINT; forwards SIGHUP as reload requests.
fn signals(reload: tokio::sync::mpsc::Sender<()>) -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading rules and playbooks");
            if reload.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
