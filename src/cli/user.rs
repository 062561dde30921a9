//! `aiops user add|list|remove`: the web console's local users, in the store.
//!
//! The password is read from stdin (prompted twice without echo on a terminal), never from an
//! argument: arguments are visible to every user of the machine (`ps`) and kept in shell
//! history.

use std::fmt;
use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use aiops::app::{self, StoreAccess};
use aiops::auth::Role;
use aiops::config::Settings;
use aiops::store::{self, ConsoleUser};
use aiops::ui::password;

/// `aiops user`'s subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Add a console user, or change an existing user's password, role and apps (which signs
    /// them out everywhere). The password is read from stdin, e.g.
    /// `aiops user add alice --role editor --apps shop,blog < password-file`; on a terminal it
    /// is asked for twice, without echo.
    Add {
        /// Sign-in name: letters, digits, '.', '_', '@', '-' (at most 64).
        name: String,
        /// admin (every app, read and write), editor (its apps, read and write: approve,
        /// maintenance) or viewer (its apps, read only).
        #[arg(long)]
        role: String,
        /// Apps (namespaces) the user sees, comma separated; required unless admin.
        #[arg(long, value_delimiter = ',')]
        apps: Vec<String>,
    },
    /// List console users: name, role, apps, when added and last changed (never hashes).
    List {
        /// Print JSON: a list of {name, role, apps, created_at, updated_at} (RFC 3339).
        #[arg(long)]
        json: bool,
    },
    /// Remove a console user and end their sessions. Exit 1 when there is no such user.
    Remove {
        /// The user's name.
        name: String,
    },
}

/// Runs the subcommand against the configured store (migrated, as `serve` would).
pub async fn run(config: Option<&Path>, cmd: Command) -> Result<ExitCode> {
    let settings = Settings::load(config)?;
    match cmd {
        Command::Add { name, role, apps } => {
            let (role, apps) = check(&name, &role, apps)?;
            let secret = read_password(&name)?;
            let hash = tokio::task::spawn_blocking(move || password::hash(&secret)).await??;
            let store = app::open_store(&settings, StoreAccess::ReadWrite).await?;
            let now = store::now_ms();
            let mut tx = store.begin_write().await?;
            let added = tx.put_console_user(&name, &hash, role, &apps, now).await?;
            // A changed password must lock out whoever knew the old one, at once.
            let ended = tx.end_console_sessions_of(&name).await?;
            tx.commit().await?;
            let apps = apps_text(role, &apps);
            if added {
                println!(
                    "added console user {name} (role {}, apps {apps})",
                    role.as_str()
                );
            } else {
                println!(
                    "updated console user {name} (role {}, apps {apps}); {ended} session(s) ended",
                    role.as_str()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::List { json } => {
            let store = app::open_store(&settings, StoreAccess::ReadOnly).await?;
            let users: Vec<Listed> = store
                .console_users()
                .await?
                .iter()
                .map(Listed::from)
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                print!("{}", Table(&users));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Remove { name } => {
            let store = app::open_store(&settings, StoreAccess::ReadWrite).await?;
            let mut tx = store.begin_write().await?;
            let removed = tx.remove_console_user(&name).await?;
            tx.commit().await?;
            if removed {
                println!("removed console user {name}; their sessions ended");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("error: no console user {name:?}");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// The name, role and apps as given, checked before a password is asked for.
fn check(name: &str, role: &str, apps: Vec<String>) -> Result<(Role, Vec<String>)> {
    password::check_name(name)?;
    let role: Role = role.parse()?;
    let mut apps: Vec<String> = apps
        .into_iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    for a in &apps {
        aiops::k8s_name::namespace(a)
            .with_context(|| format!("--apps: {a:?} is not a namespace name"))?;
    }
    apps.sort();
    apps.dedup();
    if role != Role::Admin && apps.is_empty() {
        bail!(
            "a console {} needs --apps (the namespaces they may see)",
            role.as_str()
        );
    }
    Ok((role, apps))
}

/// The password: asked twice without echo on a terminal, else all of stdin less one final
/// line break (so `echo … |` and a file with a newline both work).
fn read_password(name: &str) -> Result<String> {
    let stdin = std::io::stdin();
    let secret = if stdin.is_terminal() {
        let first = rpassword::prompt_password(format!("password for {name}: "))?;
        let again = rpassword::prompt_password("again: ")?;
        if first != again {
            bail!("the two passwords differ; nothing changed");
        }
        first
    } else {
        let mut s = String::new();
        stdin
            .lock()
            .read_to_string(&mut s)
            .context("reading the password from stdin")?;
        let s = s.strip_suffix('\n').unwrap_or(&s);
        s.strip_suffix('\r').unwrap_or(s).to_string()
    };
    if secret.contains(['\n', '\r']) {
        bail!("the password must be one line on stdin");
    }
    password::check_password(&secret)?;
    Ok(secret)
}

fn apps_text(role: Role, apps: &[String]) -> String {
    if role == Role::Admin {
        "all".to_string()
    } else {
        apps.join(",")
    }
}

/// A user as listed: never the hash.
#[derive(Debug, Serialize)]
struct Listed {
    name: String,
    role: Role,
    apps: Vec<String>,
    created_at: String,
    updated_at: String,
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl From<&ConsoleUser> for Listed {
    fn from(u: &ConsoleUser) -> Listed {
        Listed {
            name: u.name.clone(),
            role: u.role,
            apps: u.apps.clone(),
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

/// Users as a table, one per line.
struct Table<'a>(&'a [Listed]);

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(
                f,
                "no console users (add one: aiops user add NAME --role ROLE --apps APPS)"
            );
        }
        let w = self
            .0
            .iter()
            .map(|u| u.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(
            f,
            "{:w$}  {:6}  {:20}  {:20}  APPS",
            "NAME", "ROLE", "ADDED", "CHANGED"
        )?;
        for u in self.0 {
            writeln!(
                f,
                "{:w$}  {:6}  {:20}  {:20}  {}",
                u.name,
                u.role.as_str(),
                u.created_at,
                u.updated_at,
                apps_text(u.role, &u.apps)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_are_trimmed_sorted_and_deduplicated_and_an_admin_needs_none() {
        let apps = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (role, got) = check("alice", "editor", apps(&["shop", " blog", "shop", ""])).unwrap();
        assert_eq!((role, got), (Role::Editor, apps(&["blog", "shop"])));
        assert!(check("root", "admin", vec![]).is_ok());
        assert!(check("alice", "viewer", apps(&[" "])).is_err());
    }

    #[test]
    fn the_list_says_all_apps_for_an_admin_and_never_a_hash() {
        let user = |name: &str, role, apps: &[&str]| ConsoleUser {
            name: name.into(),
            password_hash: "$argon2id$v=19$secret".into(),
            role,
            apps: apps.iter().map(|s| s.to_string()).collect(),
            created_at: 0,
            updated_at: 60_000,
        };
        let listed: Vec<Listed> = [
            user("ops", Role::Admin, &[]),
            user("alice", Role::Viewer, &["shop"]),
        ]
        .iter()
        .map(Listed::from)
        .collect();
        let text = Table(&listed).to_string();
        assert!(
            text.contains("ops    admin   1970-01-01T00:00:00Z  1970-01-01T00:01:00Z  all"),
            "{text}"
        );
        assert!(
            text.contains("alice  viewer") && text.ends_with("shop\n"),
            "{text}"
        );
        assert!(!text.contains("argon2"));
        assert!(!serde_json::to_string(&listed).unwrap().contains("argon2"));
        assert!(Table(&[]).to_string().starts_with("no console users"));
    }
}
