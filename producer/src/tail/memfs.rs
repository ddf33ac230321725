//! An in-memory file system for the tailer's model tests: inodes that outlive their
//! names while open, and inode numbers reused once a file is gone and closed.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::fs::{DirEntry, FileKey, TailFs};

type Inode = Rc<RefCell<Vec<u8>>>;

/// A change the test makes while the tailer scans: after this many more `key_of`
/// answers (a rotation racing a directory scan).
type Race = (usize, Box<dyn FnOnce(&MemFs)>);

#[derive(Default)]
struct State {
    dirs: BTreeSet<PathBuf>,
    names: BTreeMap<PathBuf, u64>,
    inodes: BTreeMap<u64, Inode>,
    race: Option<Race>,
    /// The test's clock, and each inode's last change by it.
    now_ms: i64,
    modified_ms: BTreeMap<u64, i64>,
}

/// Clones share one file system (the test writes, the tailer reads).
#[derive(Clone, Default)]
pub struct MemFs(Rc<RefCell<State>>);

const DEV: u64 = 1;

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, path.display().to_string())
}

impl MemFs {
    /// Sets the clock that stamps changes (`modified_ms`).
    pub fn set_now(&self, now_ms: i64) {
        self.0.borrow_mut().now_ms = now_ms;
    }

    fn touch(&self, path: &Path) {
        let mut s = self.0.borrow_mut();
        if let Some(&ino) = s.names.get(path) {
            let now = s.now_ms;
            s.modified_ms.insert(ino, now);
        }
    }

    pub fn mkdir(&self, dir: &Path) {
        self.0.borrow_mut().dirs.insert(dir.to_path_buf());
    }

    /// Creates an empty file (replacing one of that name), taking the lowest free
    /// inode number: a number is free once no name and no open handle refer to it.
    pub fn create(&self, path: &Path) {
        let mut s = self.0.borrow_mut();
        s.names.remove(path);
        let named: BTreeSet<u64> = s.names.values().copied().collect();
        s.inodes
            .retain(|ino, inode| named.contains(ino) || Rc::strong_count(inode) > 1);
        let ino = (1..)
            .find(|i| !s.inodes.contains_key(i))
            .expect("a free number");
        s.inodes.insert(ino, Inode::default());
        s.names.insert(path.to_path_buf(), ino);
        let now = s.now_ms;
        s.modified_ms.insert(ino, now);
    }

    fn inode(&self, path: &Path) -> Option<Inode> {
        let s = self.0.borrow();
        s.names.get(path).map(|ino| s.inodes[ino].clone())
    }

    pub fn exists(&self, path: &Path) -> bool {
        self.0.borrow().names.contains_key(path)
    }

    pub fn ino(&self, path: &Path) -> Option<u64> {
        self.0.borrow().names.get(path).copied()
    }

    pub fn len_of(&self, path: &Path) -> usize {
        self.inode(path).map_or(0, |i| i.borrow().len())
    }

    pub fn append(&self, path: &Path, data: &[u8]) {
        if let Some(inode) = self.inode(path) {
            inode.borrow_mut().extend_from_slice(data);
        }
        self.touch(path);
    }

    pub fn truncate(&self, path: &Path) {
        if let Some(inode) = self.inode(path) {
            inode.borrow_mut().clear();
        }
        self.touch(path);
    }

    pub fn rename(&self, from: &Path, to: &Path) {
        let mut s = self.0.borrow_mut();
        if let Some(ino) = s.names.remove(from) {
            s.names.insert(to.to_path_buf(), ino);
        }
    }

    pub fn remove(&self, path: &Path) {
        self.0.borrow_mut().names.remove(path);
    }

    /// Runs `change` right after the tailer's next `after` stats (`key_of`), or at
    /// [`settle_race`](Self::settle_race), whichever comes first.
    pub fn race(&self, after: usize, change: impl FnOnce(&MemFs) + 'static) {
        self.0.borrow_mut().race = Some((after.max(1), Box::new(change)));
    }

    /// Makes a pending race's change now, if the tailer did not trigger it.
    pub fn settle_race(&self) {
        let change = self.0.borrow_mut().race.take();
        if let Some((_, change)) = change {
            change(self);
        }
    }

    /// `cp from to`: a new inode with the same bytes.
    pub fn copy(&self, from: &Path, to: &Path) {
        let Some(bytes) = self.inode(from).map(|i| i.borrow().clone()) else {
            return;
        };
        self.create(to);
        self.append(to, &bytes);
    }
}

impl TailFs for MemFs {
    type Handle = Inode;

    fn list_dir(&mut self, dir: &Path) -> Vec<DirEntry> {
        let s = self.0.borrow();
        let files = s.names.keys().filter(|p| p.parent() == Some(dir));
        let dirs = s.dirs.iter().filter(|p| p.parent() == Some(dir));
        files
            .map(|p| (p, false))
            .chain(dirs.map(|p| (p, true)))
            .map(|(p, is_dir)| DirEntry {
                name: p.file_name().expect("named").to_string_lossy().into_owned(),
                is_dir,
            })
            .collect()
    }

    fn key_of(&mut self, path: &Path) -> io::Result<FileKey> {
        let answer = self
            .ino(path)
            .map(|ino| FileKey { dev: DEV, ino })
            .ok_or_else(|| not_found(path));
        let fire = {
            let mut s = self.0.borrow_mut();
            match s.race.as_mut() {
                Some((left, _)) if *left > 1 => {
                    *left -= 1;
                    None
                }
                Some(_) => s.race.take(),
                None => None,
            }
        };
        if let Some((_, change)) = fire {
            change(self);
        }
        answer
    }

    fn open(&mut self, path: &Path) -> io::Result<(Inode, FileKey)> {
        let ino = self.ino(path).ok_or_else(|| not_found(path))?;
        let inode = self.inode(path).ok_or_else(|| not_found(path))?;
        Ok((inode, FileKey { dev: DEV, ino }))
    }

    fn modified_ms(&mut self, path: &Path) -> io::Result<i64> {
        let s = self.0.borrow();
        let ino = s.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(s.modified_ms.get(ino).copied().unwrap_or(0))
    }

    fn len(&mut self, file: &Inode) -> io::Result<u64> {
        Ok(file.borrow().len() as u64)
    }

    fn read_at(&mut self, file: &Inode, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let data = file.borrow();
        let start = (offset as usize).min(data.len());
        let end = (start + max).min(data.len());
        Ok(data[start..end].to_vec())
    }
}
