//! Where the tailer's checkpoint is kept. The formats themselves (fingerprint, the
//! `tail:` event id, the checkpoint file) are in `evd_schemas::tail`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where checkpoints live. `save` is atomic: after a crash `load` returns the old or
/// the new checkpoint, never a mix.
pub trait CheckpointStore {
    fn load(&mut self) -> io::Result<Option<Vec<u8>>>;
    fn save(&mut self, bytes: &[u8]) -> io::Result<()>;
}

/// A checkpoint file, replaced by write-temp, fsync, rename, fsync-directory.
pub struct FileCheckpointStore {
    pub path: PathBuf,
}

impl CheckpointStore for FileCheckpointStore {
    fn load(&mut self) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(&self.path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save(&mut self, bytes: &[u8]) -> io::Result<()> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

/// A checkpoint store in memory (tests and benchmarks).
#[derive(Debug, Default, Clone)]
pub struct MemCheckpointStore {
    pub bytes: Option<Vec<u8>>,
}

impl CheckpointStore for MemCheckpointStore {
    fn load(&mut self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.bytes.clone())
    }
    fn save(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.bytes = Some(bytes.to_vec());
        Ok(())
    }
}
