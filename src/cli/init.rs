//! `aiops init DIR`: a settings file and the shipped rules and playbooks for a team to edit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

/// `aiops init`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The directory (created if needed).
    dir: PathBuf,
    /// Overwrite files that already exist.
    #[arg(long)]
    force: bool,
}

/// Writes the files and says what to run next.
pub fn run(args: Args) -> Result<ExitCode> {
    let Args { dir, force } = args;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Absolute, so the settings file works from any working directory.
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let files = aiops::embedded::init_files(&dir, &aiops::embedded::settings_file(&dir));
    aiops::embedded::write_files(&files, force)?;
    print!(
        "{}",
        Written {
            dir: &dir,
            files: files.iter().map(|(p, _)| p.as_path()).collect()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// What `init` wrote, and the next command.
struct Written<'a> {
    dir: &'a Path,
    files: Vec<&'a Path>,
}

impl std::fmt::Display for Written<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for path in &self.files {
            writeln!(f, "wrote {}", path.display())?;
        }
        writeln!(
            f,
            "next: aiops --config {} check",
            self.dir.join("aiops.yaml").display()
        )
    }
}
