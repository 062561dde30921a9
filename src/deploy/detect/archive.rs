//! Safe extraction of an uploaded source: a gzip-compressed tar or a zip, told apart by their
//! first bytes (an upload's name is the uploader's word, its bytes are not).
//!
//! An upload is untrusted. Every entry's name is checked before anything is written: an
//! absolute path, a Windows drive or a `..` component is refused (zip-slip), so nothing lands
//! outside the destination. The number of entries and the bytes written are capped, counted
//! from what is actually decompressed rather than from the sizes the archive declares (a zip
//! bomb declares small ones). Only regular files and directories are restored, with default
//! permissions: links are skipped (a link followed by a file through it is the other way out
//! of the destination) and so are devices and FIFOs; no owner, mode or setuid bit is kept.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::{DetectOptions, Error};

/// The caps of an extraction.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most bytes written, all files together.
    pub max_bytes: u64,
    /// Most entries (files, directories, skipped links).
    pub max_entries: usize,
}

impl From<&DetectOptions> for Limits {
    fn from(o: &DetectOptions) -> Self {
        Limits {
            max_bytes: o.max_archive_bytes,
            max_entries: o.max_archive_entries,
        }
    }
}

/// What an extraction wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Regular files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
    /// Entries not restored: symbolic and hard links, devices, FIFOs.
    pub skipped: Vec<String>,
}

/// The formats told apart by their first bytes.
enum Format {
    TarGz,
    Zip,
}

/// Extracts `archive` (`.tar.gz` or `.zip`) into the existing directory `dest` within `limits`.
///
/// On an error, what was written so far stays in `dest`: extract into a directory of its own
/// (a temporary one) and remove it.
pub fn extract(archive: &Path, dest: &Path, limits: &Limits) -> Result<Extracted, Error> {
    let io = |source| Error::Io {
        path: archive.to_path_buf(),
        source,
    };
    let mut file = File::open(archive).map_err(io)?;
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut file, &mut magic).map_err(io)?;
    let format = match &magic[..n] {
        [0x1f, 0x8b, ..] => Format::TarGz,
        // A local file header, or the end record of an empty zip.
        [b'P', b'K', 3, 4] | [b'P', b'K', 5, 6] => Format::Zip,
        other => {
            return Err(Error::UnsupportedArchive {
                path: archive.to_path_buf(),
                magic: if other.is_empty() {
                    "none: the file is empty".into()
                } else {
                    other
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                },
            });
        }
    };
    let file = File::open(archive).map_err(io)?;
    let mut out = Writer {
        archive,
        dest,
        limits,
        entries: 0,
        done: Extracted::default(),
    };
    match format {
        Format::TarGz => extract_tar(file, &mut out)?,
        Format::Zip => extract_zip(file, &mut out)?,
    }
    Ok(out.done)
}

/// Fills as much of `buf` as the file has.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Writes entries under the destination, keeping count against the limits.
struct Writer<'a> {
    archive: &'a Path,
    dest: &'a Path,
    limits: &'a Limits,
    entries: usize,
    done: Extracted,
}

/// What an entry is, as far as extraction cares.
enum EntryKind {
    File,
    Dir,
    /// Not restored (a link, a device).
    Skip,
}

impl Writer<'_> {
    /// Counts one more entry against the limit.
    fn count(&mut self) -> Result<(), Error> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(Error::TooManyEntries {
                path: self.archive.to_path_buf(),
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    /// Restores one entry named `name` (as stored) whose data `data` yields.
    fn entry(&mut self, name: &str, kind: EntryKind, data: &mut dyn Read) -> Result<(), Error> {
        self.count()?;
        let rel = safe_relative(name).map_err(|reason| Error::UnsafeEntry {
            path: self.archive.to_path_buf(),
            entry: name.to_string(),
            reason,
        })?;
        let Some(rel) = rel else {
            // "./" and the like: the destination itself.
            return Ok(());
        };
        let target = self.dest.join(&rel);
        let io = |source| Error::Io {
            path: target.clone(),
            source,
        };
        match kind {
            EntryKind::Skip => self.done.skipped.push(name.to_string()),
            EntryKind::Dir => std::fs::create_dir_all(&target).map_err(io)?,
            EntryKind::File => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                // A fresh file each time (never through an existing link: none are made).
                let mut file = File::create(&target).map_err(io)?;
                let room = self.limits.max_bytes - self.done.bytes;
                // One byte more than the room tells "exactly full" from "over".
                let written =
                    io::copy(&mut data.take(room + 1), &mut file).map_err(|e| Error::Archive {
                        path: self.archive.to_path_buf(),
                        message: format!("{name}: {e}"),
                    })?;
                if written > room {
                    return Err(Error::TooLarge {
                        path: self.archive.to_path_buf(),
                        limit: self.limits.max_bytes,
                    });
                }
                self.done.bytes += written;
                self.done.files += 1;
            }
        }
        Ok(())
    }
}

/// `name` as a path relative to the destination, or why it is refused; `None` when it names
/// the destination itself (`./`). Both separators count: a zip made on Windows uses `\`.
fn safe_relative(name: &str) -> Result<Option<PathBuf>, &'static str> {
    if name.contains('\0') {
        return Err("a NUL byte in the name");
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Err("an absolute path");
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err("a Windows drive path");
    }
    let mut out = PathBuf::new();
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err("a `..` component (it would land outside the destination)"),
            p => {
                // Belt and braces: what the platform makes of the part must be a plain name.
                if !matches!(Path::new(p).components().next(), Some(Component::Normal(_))) {
                    return Err("a component that is not a plain name");
                }
                out.push(p)
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

fn extract_tar(file: File, out: &mut Writer<'_>) -> Result<(), Error> {
    let bad = |e: io::Error| Error::Archive {
        path: out.archive.to_path_buf(),
        message: e.to_string(),
    };
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        // The raw bytes: `path()` would already have interpreted them.
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Dir,
            _ => EntryKind::Skip,
        };
        out.entry(&name, kind, &mut entry)?;
    }
    Ok(())
}

fn extract_zip(file: File, out: &mut Writer<'_>) -> Result<(), Error> {
    let bad = |e: zip::result::ZipError| Error::Archive {
        path: out.archive.to_path_buf(),
        message: e.to_string(),
    };
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file)).map_err(bad)?;
    // The central directory says how many entries there are: refuse before reading any.
    if zip.len() > out.limits.max_entries {
        return Err(Error::TooManyEntries {
            path: out.archive.to_path_buf(),
            limit: out.limits.max_entries,
        });
    }
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(bad)?;
        let name = entry.name().map_err(bad)?.into_owned();
        let kind = if entry.is_symlink() {
            EntryKind::Skip
        } else if entry.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::File
        };
        out.entry(&name, kind, &mut entry)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::safe_relative;

    #[test]
    fn entry_names_that_leave_the_destination_are_refused() {
        for name in [
            "/etc/passwd",
            "\\windows\\evil",
            "C:\\evil",
            "../evil",
            "a/../../evil",
            "a\\..\\..\\evil",
            "ok/..",
            "nul\0byte",
        ] {
            assert!(safe_relative(name).is_err(), "{name:?} was accepted");
        }
    }

    #[test]
    fn plain_relative_names_are_kept_and_dots_dropped() {
        assert_eq!(
            safe_relative("./shop/app.py").unwrap().unwrap(),
            std::path::Path::new("shop").join("app.py")
        );
        assert_eq!(safe_relative("./").unwrap(), None);
        assert_eq!(
            safe_relative("a\\b.txt").unwrap().unwrap(),
            std::path::Path::new("a").join("b.txt")
        );
    }
}
