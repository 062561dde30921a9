//! Safe extraction of an uploaded source: a gzip-compressed tar, a plain tar or a zip, told
//! apart by their bytes (gzip's and zip's magic at the start, `ustar` at offset 257 of a tar's
//! first header): an upload's name is the uploader's word, its bytes are not.
//!
//! An upload is untrusted. Every entry's name is checked before anything is written: an
//! absolute path, a Windows drive or a `..` component is refused (zip-slip), so nothing lands
//! outside the destination. The number of entries and the bytes written are capped, counted
//! from what is actually decompressed rather than from the sizes the archive declares (a zip
//! bomb declares small ones). Only regular files and directories are restored, with default
//! permissions: links are skipped (a link followed by a file through it is the other way out
//! of the destination) and so are devices and FIFOs; no owner, mode or setuid bit is kept.
//!
//! Counting written bytes is not enough for a tar: the `tar` crate reads a GNU long name or a
//! PAX header whole into memory, and steps over a skipped entry's data by reading it, neither
//! of which writes anything. So every byte the tar reader takes from the decompressor is
//! counted too (`Metered`) and capped at the byte limit plus [`HEADER_ALLOWANCE`] per entry
//! seen (one more for the entry being read): ordinary headers and padding fit that many times
//! over, a bomb hidden in headers or in skipped entries does not. A zip needs no such meter:
//! `ZipArchive` seeks to each entry, so only the files restored are ever inflated (and counted
//! as written), and its names and central directory are stored uncompressed, bounded by the
//! upload's own size.
use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

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
    /// An uncompressed (POSIX or GNU) tar.
    Tar,
    Zip,
}

/// Bytes of headers (a long name, PAX records) and padding allowed per tar entry on top of the
/// byte limit: a 512-byte header and at most 511 bytes of padding per entry, and long names
/// of a few kilobytes, fit many times over.
pub const HEADER_ALLOWANCE: u64 = 64 * 1024;

/// Where a tar's header block holds its magic (`ustar`), and the magic's length.
const USTAR_AT: usize = 257;
const USTAR: &[u8] = b"ustar";

/// Extracts `archive` (`.tar.gz`, `.tar` or `.zip`) into the existing directory `dest` within `limits`.
///
/// On an error, what was written so far stays in `dest`: extract into a directory of its own
/// (a temporary one) and remove it.
pub fn extract(archive: &Path, dest: &Path, limits: &Limits) -> Result<Extracted, Error> {
    let io = |source| Error::Io {
        path: archive.to_path_buf(),
        source,
    };
    let mut file = File::open(archive).map_err(io)?;
    let mut head = [0u8; USTAR_AT + USTAR.len()];
    let n = read_up_to(&mut file, &mut head).map_err(io)?;
    let head = &head[..n];
    let format = match head {
        [0x1f, 0x8b, ..] => Format::TarGz,
        // A local file header, or the end record of an empty zip.
        [b'P', b'K', 3, 4, ..] | [b'P', b'K', 5, 6, ..] => Format::Zip,
        _ if head.get(USTAR_AT..) == Some(USTAR) => Format::Tar,
        _ => {
            // The first bytes say what the file is to a person (`PK`, `{"`, `name:`).
            let other = &head[..n.min(4)];
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
        entries: Rc::new(Cell::new(0)),
        done: Extracted::default(),
    };
    let file = io::BufReader::new(file);
    match format {
        Format::TarGz => extract_tar(flate2::read::GzDecoder::new(file), &mut out)?,
        Format::Tar => extract_tar(file, &mut out)?,
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
    /// Entries seen, shared with the tar's [`Metered`] reader (its allowance grows with them).
    entries: Rc<Cell<usize>>,
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
        self.entries.set(self.entries.get() + 1);
        if self.entries.get() > self.limits.max_entries {
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

/// A reader counting the bytes it yields, failing once they pass the byte limit plus
/// [`HEADER_ALLOWANCE`] for each entry seen and the one being read. It sits between the
/// decompressor and `tar::Archive`, so headers and skipped data count as well as files.
struct Metered<R> {
    inner: R,
    read: u64,
    max_bytes: u64,
    entries: Rc<Cell<usize>>,
    /// Set when the cap is passed, so the error that surfaces (wrapped by the tar reader, or
    /// as a failed copy of an entry's data) is told apart from a corrupt archive.
    over: Rc<Cell<bool>>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let entries = self.entries.get() as u64 + 1;
        let cap = self
            .max_bytes
            .saturating_add(HEADER_ALLOWANCE.saturating_mul(entries));
        if self.read > cap {
            self.over.set(true);
            return Err(io::Error::other(
                "the archive decompresses to more than its byte limit allows",
            ));
        }
        // At most one byte past the cap, so "over" is seen without reading further.
        let room = usize::try_from(cap - self.read + 1).unwrap_or(usize::MAX);
        let len = buf.len().min(room);
        let n = self.inner.read(&mut buf[..len])?;
        self.read += n as u64;
        Ok(n)
    }
}

fn extract_tar(reader: impl Read, out: &mut Writer<'_>) -> Result<(), Error> {
    let over = Rc::new(Cell::new(false));
    let metered = Metered {
        inner: reader,
        read: 0,
        max_bytes: out.limits.max_bytes,
        entries: out.entries.clone(),
        over: over.clone(),
    };
    let archive = out.archive.to_path_buf();
    let limit = out.limits.max_bytes;
    let too_large = || Error::TooLarge {
        path: archive.clone(),
        limit,
    };
    let bad = |e: io::Error| {
        if over.get() {
            too_large()
        } else {
            Error::Archive {
                path: archive.clone(),
                message: e.to_string(),
            }
        }
    };
    let mut tar = tar::Archive::new(metered);
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        // The raw bytes: `path()` would already have interpreted them.
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Dir,
            _ => EntryKind::Skip,
        };
        match out.entry(&name, kind, &mut entry) {
            // A failed copy of the entry's data may be the meter's doing.
            Err(Error::Archive { .. }) if over.get() => return Err(too_large()),
            other => other?,
        }
    }
    Ok(())
}

fn extract_zip(file: io::BufReader<File>, out: &mut Writer<'_>) -> Result<(), Error> {
    let bad = |e: zip::result::ZipError| Error::Archive {
        path: out.archive.to_path_buf(),
        message: e.to_string(),
    };
    let mut zip = zip::ZipArchive::new(file).map_err(bad)?;
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
