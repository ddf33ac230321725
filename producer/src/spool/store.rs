//! Where segments live: a directory of files, or memory (tests and crash simulation).
//!
//! Contract of every [`SegmentStore`]: `append` may be lost on a crash until `sync`
//! returns; `create`, `truncate` and `remove` are durable when they return (the
//! directory is fsynced). Any error from `sync` is fatal to the caller.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub trait SegmentStore {
    /// Ids of existing segments, ascending.
    fn list(&mut self) -> io::Result<Vec<u64>>;
    fn read_all(&mut self, id: u64) -> io::Result<Vec<u8>>;
    fn read_at(&mut self, id: u64, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    fn create(&mut self, id: u64) -> io::Result<()>;
    fn append(&mut self, id: u64, data: &[u8]) -> io::Result<()>;
    fn sync(&mut self, id: u64) -> io::Result<()>;
    fn truncate(&mut self, id: u64, len: u64) -> io::Result<()>;
    fn remove(&mut self, id: u64) -> io::Result<()>;
    /// Bytes the file system still has for the spool; `None` when unknown (no limit).
    fn available_bytes(&mut self) -> io::Result<Option<u64>> {
        Ok(None)
    }
}

/// Whether an I/O error means the disk (or the caller's quota) is full.
pub fn is_storage_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.kind() == io::ErrorKind::QuotaExceeded
}

/// Segments as files `<id:020>.seg` in one directory.
pub struct DirStore {
    dir: PathBuf,
    open: Option<(u64, File)>,
}

impl DirStore {
    /// Opens (creating, mode 0700) the spool directory.
    pub fn open(dir: &Path) -> io::Result<DirStore> {
        fs::create_dir_all(dir)?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        Ok(DirStore {
            dir: dir.to_path_buf(),
            open: None,
        })
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.seg"))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn file(&mut self, id: u64) -> io::Result<&mut File> {
        if self.open.as_ref().is_none_or(|(open, _)| *open != id) {
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(self.path(id))?;
            self.open = Some((id, file));
        }
        Ok(&mut self.open.as_mut().expect("just set").1)
    }
}

impl SegmentStore for DirStore {
    fn list(&mut self) -> io::Result<Vec<u64>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".seg").and_then(|s| s.parse().ok()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    fn read_all(&mut self, id: u64) -> io::Result<Vec<u8>> {
        fs::read(self.path(id))
    }

    fn read_at(&mut self, id: u64, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut file = File::open(self.path(id))?;
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0; len];
        file.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn create(&mut self, id: u64) -> io::Result<()> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.path(id))?
            .sync_all()?;
        self.sync_dir()
    }

    fn append(&mut self, id: u64, data: &[u8]) -> io::Result<()> {
        self.file(id)?.write_all(data)
    }

    fn sync(&mut self, id: u64) -> io::Result<()> {
        self.file(id)?.sync_data()
    }

    fn truncate(&mut self, id: u64, len: u64) -> io::Result<()> {
        let file = self.file(id)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn remove(&mut self, id: u64) -> io::Result<()> {
        if self.open.as_ref().is_some_and(|(open, _)| *open == id) {
            self.open = None;
        }
        fs::remove_file(self.path(id))?;
        self.sync_dir()
    }

    fn available_bytes(&mut self) -> io::Result<Option<u64>> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.dir.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: statvfs(3) writes only into `st`, which is a plain C struct.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(st.f_bavail as u64 * st.f_frsize as u64))
    }
}

/// In-memory segments that remember what was synced, to simulate crashes.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    segments: BTreeMap<u64, MemSegment>,
    /// A disk of this many bytes: appends past it write what fits and fail like ENOSPC.
    capacity: Option<u64>,
}

#[derive(Debug, Default, Clone)]
struct MemSegment {
    data: Vec<u8>,
    synced: usize,
}

fn missing(id: u64) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("segment {id}"))
}

impl MemStore {
    /// A crash: every segment keeps its synced bytes plus `keep(unsynced_len)` bytes of
    /// what was written after (a torn write keeps any prefix).
    pub fn crash(&mut self, mut keep: impl FnMut(usize) -> usize) {
        for seg in self.segments.values_mut() {
            let unsynced = seg.data.len() - seg.synced;
            let kept = keep(unsynced).min(unsynced);
            seg.data.truncate(seg.synced + kept);
            seg.synced = seg.data.len();
        }
    }

    /// A store on a disk of `bytes` bytes (see [`set_capacity`](Self::set_capacity)).
    pub fn with_capacity(bytes: u64) -> MemStore {
        MemStore {
            capacity: Some(bytes),
            ..MemStore::default()
        }
    }

    /// Resizes the simulated disk (space freed or taken by someone else).
    pub fn set_capacity(&mut self, bytes: Option<u64>) {
        self.capacity = bytes;
    }

    fn used(&self) -> u64 {
        self.segments.values().map(|s| s.data.len() as u64).sum()
    }

    /// Direct access for corruption tests.
    pub fn bytes_mut(&mut self, id: u64) -> Option<&mut Vec<u8>> {
        self.segments.get_mut(&id).map(|s| &mut s.data)
    }
}

impl SegmentStore for MemStore {
    fn list(&mut self) -> io::Result<Vec<u64>> {
        Ok(self.segments.keys().copied().collect())
    }
    fn read_all(&mut self, id: u64) -> io::Result<Vec<u8>> {
        Ok(self
            .segments
            .get(&id)
            .ok_or_else(|| missing(id))?
            .data
            .clone())
    }
    fn read_at(&mut self, id: u64, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let seg = self.segments.get(&id).ok_or_else(|| missing(id))?;
        let start = offset as usize;
        seg.data
            .get(start..start + len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past end"))
    }
    fn create(&mut self, id: u64) -> io::Result<()> {
        self.segments.insert(id, MemSegment::default());
        Ok(())
    }
    fn append(&mut self, id: u64, data: &[u8]) -> io::Result<()> {
        let room = self
            .capacity
            .map_or(u64::MAX, |c| c.saturating_sub(self.used()));
        let fits = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        self.segments
            .get_mut(&id)
            .ok_or_else(|| missing(id))?
            .data
            .extend_from_slice(&data[..fits]);
        if fits < data.len() {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        Ok(())
    }
    fn sync(&mut self, id: u64) -> io::Result<()> {
        let seg = self.segments.get_mut(&id).ok_or_else(|| missing(id))?;
        seg.synced = seg.data.len();
        Ok(())
    }
    fn truncate(&mut self, id: u64, len: u64) -> io::Result<()> {
        let seg = self.segments.get_mut(&id).ok_or_else(|| missing(id))?;
        seg.data.truncate(len as usize);
        seg.synced = seg.synced.min(seg.data.len());
        Ok(())
    }
    fn remove(&mut self, id: u64) -> io::Result<()> {
        self.segments
            .remove(&id)
            .map(|_| ())
            .ok_or_else(|| missing(id))
    }
    fn available_bytes(&mut self) -> io::Result<Option<u64>> {
        Ok(self.capacity.map(|c| c.saturating_sub(self.used())))
    }
}
