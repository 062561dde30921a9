//! `aiops token issue`: mint a JWT for the `/api`.

use std::fmt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use aiops::auth::{Claims, Key, Role};
use aiops::config::Settings;

/// `aiops token`'s subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Mint a token for the /api; prints a summary, then the token alone on the last line.
    ///
    /// Example: aiops token issue --sub alice --apps shop,blog --role editor --ttl 24h
    Issue {
        /// Who the token is for (recorded in the audit log).
        #[arg(long)]
        sub: String,
        /// Apps (namespaces) it may see, comma separated; admins see every app.
        #[arg(long, value_delimiter = ',')]
        apps: Vec<String>,
        /// admin, editor (read and write) or viewer (read only).
        #[arg(long, default_value = "viewer")]
        role: String,
        /// How long it is valid, e.g. 24h, 30d.
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
}

/// Issues the token: the summary to stderr, the token alone to stdout (for `$(…)`).
pub fn run(config: Option<&Path>, cmd: Command) -> Result<ExitCode> {
    let Command::Issue {
        sub,
        apps,
        role,
        ttl,
    } = cmd;
    let settings = Settings::load(config)?;
    let secret = settings.api.jwt_secret.clone().context(
        "no JWT secret configured: set AIOPS_JWT_SECRET (or api.jwt_secret / api.jwt_secret_file in the config file)",
    )?;
    let key = Key::new(secret)?;
    let role: Role = role.parse()?;
    let ttl = aiops::config::parse_duration(&ttl).map_err(anyhow::Error::msg)?;
    if ttl.is_zero() {
        anyhow::bail!("--ttl must be above 0s");
    }
    let apps: Vec<String> = apps
        .into_iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if role != Role::Admin && apps.is_empty() {
        anyhow::bail!(
            "a {} token needs --apps (the namespaces it may see)",
            role.as_str()
        );
    }
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub,
        role,
        apps,
        exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        iat: now,
        nbf: None,
    };
    let token = key.issue(&claims)?;
    eprintln!("{}", Summary(&claims));
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// Who a token is for, its role, apps and expiry (never the token itself).
struct Summary<'a>(&'a Claims);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        let expires = chrono::DateTime::from_timestamp(c.exp, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        write!(
            f,
            "token for {} (role {}, apps {}), expires {expires}:",
            c.sub,
            c.role.as_str(),
            if c.role == Role::Admin {
                "all".to_string()
            } else {
                c.apps.join(",")
            }
        )
    }
}
