//! `aiops render FILE [-o DIR]`: an app's objects, monitoring and Alertmanager route, changing
//! nothing. The template options and the loading are shared with `deploy`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use aiops::config::Settings;
use aiops::deploy::{AppSpec, Rendered};

/// `aiops render`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The app spec (YAML or JSON): name, domain, framework, image, plan, ...
    file: PathBuf,
    /// Write one file per object into DIR instead of printing.
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    output: Option<PathBuf>,
    #[command(flatten)]
    templates: TemplateArgs,
}

/// Template options shared by render and deploy.
#[derive(clap::Args, Debug)]
pub struct TemplateArgs {
    /// A directory whose files override the embedded templates of the same name
    /// (default deploy.templates_dir, AIOPS_DEPLOY_TEMPLATES).
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// The daemon's webhook URL for the Alertmanager snippet (default deploy.webhook_url,
    /// AIOPS_DEPLOY_WEBHOOK_URL, http://aiops.aiops.svc:9095/webhook/alertmanager).
    #[arg(long, value_name = "URL")]
    webhook_url: Option<String>,
}

/// Prints the YAML stream, or writes the files and lists them.
pub fn run(config: Option<&Path>, args: Args) -> Result<ExitCode> {
    let (_, _, rendered) = load_and_render(config, &args.file, &args.templates)?;
    match args.output {
        None => print!("{}", rendered.to_stream()),
        Some(dir) => {
            for path in rendered.write_dir(&dir)? {
                println!("{}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads settings and the spec, and renders it with the command line's template options
/// (which override `deploy.webhook_url` and `deploy.templates_dir`).
pub fn load_and_render(
    config: Option<&Path>,
    file: &Path,
    args: &TemplateArgs,
) -> Result<(Settings, AppSpec, Rendered)> {
    let (settings, spec) = load(config, file, args)?;
    let rendered = render_with(&settings, &spec)?;
    Ok((settings, spec, rendered))
}

/// The settings (with the template arguments applied) and the spec, not yet rendered.
pub fn load(
    config: Option<&Path>,
    file: &Path,
    args: &TemplateArgs,
) -> Result<(Settings, AppSpec)> {
    let mut settings = Settings::load(config)?;
    if let Some(url) = &args.webhook_url {
        settings.deploy.webhook_url = url.clone();
    }
    if let Some(dir) = &args.templates {
        settings.deploy.templates_dir = Some(dir.clone());
    }
    let spec = AppSpec::load(file)?;
    Ok((settings, spec))
}

/// Renders `spec` with the deploy settings.
pub fn render_with(settings: &Settings, spec: &AppSpec) -> Result<Rendered> {
    Ok(aiops::deploy::render(
        spec,
        &aiops::deploy::Options::from_settings(&settings.deploy),
    )?)
}
