//! Reads registry directories and keyring files. `evd-schemas` parses; this does the I/O.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use evd_schemas::{AgentKeyring, MasterKeyring, Registry};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: no *.toml event types found")]
    EmptyRegistry(PathBuf),
    #[error(transparent)]
    Invalid(#[from] evd_schemas::Error),
    #[error(transparent)]
    Config(#[from] evd_schemas::SourceError),
}

/// A config file's name (for messages) and text, with `${VAR}` replaced from the
/// environment (`evd_schemas::env_vars`).
pub fn config_text(path: &Path) -> Result<(String, String), LoadError> {
    let origin = path.display().to_string();
    let raw = read(path)?;
    let text = evd_schemas::env_vars::interpolate(&origin, &raw, |name| std::env::var(name).ok())?;
    Ok((origin, text))
}

fn read(path: &Path) -> Result<String, LoadError> {
    fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The `*.toml` files of `dir`, sorted by name.
pub fn registry_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads every `*.toml` in `dir` as one registry; errors name file, line and key.
pub fn registry_dir(dir: &Path) -> Result<Registry, LoadError> {
    let files = registry_files(dir)?;
    if files.is_empty() {
        return Err(LoadError::EmptyRegistry(dir.to_path_buf()));
    }
    let mut sources = Vec::with_capacity(files.len());
    for path in files {
        let text = read(&path)?;
        sources.push((path.display().to_string(), text));
    }
    Ok(Registry::from_sources(sources)?)
}

pub fn master_keyring(path: &Path) -> Result<MasterKeyring, LoadError> {
    Ok(MasterKeyring::from_toml(
        &path.display().to_string(),
        &read(path)?,
    )?)
}

pub fn agent_keyring(path: &Path) -> Result<AgentKeyring, LoadError> {
    Ok(AgentKeyring::from_toml(
        &path.display().to_string(),
        &read(path)?,
    )?)
}

/// Writes a secret file readable by its owner only, refusing to overwrite.
pub fn write_secret(path: &Path, text: &str) -> Result<(), LoadError> {
    let io = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_registry_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/registry");
        let reg = registry_dir(&dir).unwrap();
        assert!(reg.len() >= 5);
        for name in [
            "PageView",
            "SearchViewResponse",
            "EndSong",
            "AdImpression",
            "ClientCrash",
        ] {
            assert!(reg.get(name).is_some(), "{name}");
        }
    }

    #[test]
    fn registry_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("bad.toml"),
            "name = \"X\"\nversion = 1\nowner = \"o\"\ntier = \"urgent\"\n",
        )
        .unwrap();
        let msg = registry_dir(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("bad.toml:4: key `tier`"), "{msg}");
    }
}
