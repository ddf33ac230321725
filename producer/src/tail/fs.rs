//! The file system as the tailer sees it: a small trait so the tailer core runs
//! over the real disk in the agent and over an in-memory model in tests.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

pub use evd_schemas::tail::FileKey;

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
}

pub trait TailFs {
    /// An open file. Reading through it keeps working after the file is renamed or
    /// deleted, as with a Unix file descriptor.
    type Handle;

    /// The entries of a directory; a missing or unreadable directory lists as empty.
    fn list_dir(&mut self, dir: &Path) -> Vec<DirEntry>;
    /// The key of the file a path names now (following symlinks).
    fn key_of(&mut self, path: &Path) -> io::Result<FileKey>;
    /// Opens a path for reading; the key is the opened file's own (no race with a
    /// rename between looking and opening).
    fn open(&mut self, path: &Path) -> io::Result<(Self::Handle, FileKey)>;
    /// When the file a path names was last modified, in ms since the Unix epoch.
    fn modified_ms(&mut self, path: &Path) -> io::Result<i64>;
    /// The open file's current length.
    fn len(&mut self, file: &Self::Handle) -> io::Result<u64>;
    /// Up to `max` bytes from `offset` (fewer at the end of the file).
    fn read_at(&mut self, file: &Self::Handle, offset: u64, max: usize) -> io::Result<Vec<u8>>;
}

/// The real file system.
#[derive(Debug, Default)]
pub struct RealFs;

impl TailFs for RealFs {
    type Handle = File;

    fn list_dir(&mut self, dir: &Path) -> Vec<DirEntry> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                // Follow symlinks, as opening does.
                let is_dir = std::fs::metadata(e.path()).map(|m| m.is_dir()).ok()?;
                Some(DirEntry { name, is_dir })
            })
            .collect()
    }

    fn key_of(&mut self, path: &Path) -> io::Result<FileKey> {
        let m = std::fs::metadata(path)?;
        Ok(FileKey {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    fn open(&mut self, path: &Path) -> io::Result<(File, FileKey)> {
        let file = File::open(path)?;
        let m = file.metadata()?;
        if !m.is_file() {
            return Err(io::Error::other(format!(
                "{} is not a file",
                path.display()
            )));
        }
        Ok((
            file,
            FileKey {
                dev: m.dev(),
                ino: m.ino(),
            },
        ))
    }

    fn modified_ms(&mut self, path: &Path) -> io::Result<i64> {
        let m = std::fs::metadata(path)?;
        Ok(m.mtime().saturating_mul(1000) + m.mtime_nsec() / 1_000_000)
    }

    fn len(&mut self, file: &File) -> io::Result<u64> {
        Ok(file.metadata()?.len())
    }

    fn read_at(&mut self, file: &File, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; max];
        let mut filled = 0;
        while filled < max {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }
}
