//! Glob patterns of file sources, on the `globset` crate: `*` and `?` within one
//! path component, `[abc]`/`[0-9]`/`[!x]` classes, `{a,b}` alternatives, and `**`
//! for any number of directories (`/var/log/**/app*.log` names `/var/log/app.log`
//! and `/var/log/a/b/app-1.log`). A pattern is expanded by listing the directories
//! under its longest literal prefix: to the pattern's depth, or at most
//! [`MAX_RECURSIVE_DEPTH`] levels below that prefix when it has `**` (symlinked
//! directories are followed, as opening follows symlinks; the bound keeps a loop
//! from running on).

use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

use super::fs::TailFs;

/// How many directories below its literal prefix a `**` pattern looks.
pub const MAX_RECURSIVE_DEPTH: usize = 16;

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: PathBuf,
    matcher: GlobMatcher,
    /// The components before the first one with a wildcard.
    base: PathBuf,
    /// Directory levels below `base` a match can be at (1: in `base` itself).
    depth: usize,
    /// The pattern ends in `**`: `base` itself is one of the directories it names.
    names_base: bool,
    /// The directories the pattern's files live in (its parent, compiled).
    parent: Option<Box<Pattern>>,
}

/// A pattern that cannot be compiled: the message names the pattern and the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPattern(pub String);

impl std::fmt::Display for BadPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_wild(component: &str) -> bool {
    component.contains(['*', '?', '[', '{'])
}

impl Pattern {
    pub fn new(text: &Path) -> Result<Pattern, BadPattern> {
        let Some(glob) = text.to_str() else {
            return Err(BadPattern(format!("{}: not UTF-8", text.display())));
        };
        let matcher = GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .map_err(|e| BadPattern(format!("{glob}: {}", e.kind())))?
            .compile_matcher();
        let components: Vec<Component> = text.components().collect();
        let literal = components
            .iter()
            .take_while(|c| !is_wild(&c.as_os_str().to_string_lossy()))
            .count();
        let rest = &components[literal..];
        let recursive = rest
            .iter()
            .any(|c| c.as_os_str().to_string_lossy().contains("**"));
        let parent = match text.parent() {
            Some(p) if !p.as_os_str().is_empty() => Some(Box::new(Pattern::new(p)?)),
            _ => None,
        };
        Ok(Pattern {
            text: text.to_path_buf(),
            matcher,
            base: components[..literal].iter().collect(),
            depth: if recursive {
                MAX_RECURSIVE_DEPTH
            } else {
                rest.len()
            },
            names_base: rest.last().is_some_and(|c| c.as_os_str() == "**"),
            parent,
        })
    }

    /// The pattern as written.
    pub fn text(&self) -> &Path {
        &self.text
    }

    /// Whether `path` is one of the paths the pattern names.
    pub fn is_match(&self, path: &Path) -> bool {
        self.matcher.is_match(path)
    }

    /// The directories this pattern's files can be in, now.
    pub fn dirs<F: TailFs>(&self, fs: &mut F) -> Vec<PathBuf> {
        match &self.parent {
            Some(parent) => parent.expand(fs, true),
            None => vec![PathBuf::from(".")],
        }
    }

    /// What the pattern names now, sorted: files, or directories if `dirs`.
    pub fn expand<F: TailFs>(&self, fs: &mut F, dirs: bool) -> Vec<PathBuf> {
        if self.depth == 0 {
            return vec![self.text.clone()];
        }
        let mut found = Vec::new();
        if dirs && self.names_base {
            found.push(self.base.clone());
        }
        let mut level = vec![self.base.clone()];
        for depth in 1..=self.depth {
            let mut next = Vec::new();
            for dir in &level {
                let listed = if dir.as_os_str().is_empty() {
                    fs.list_dir(Path::new("."))
                } else {
                    fs.list_dir(dir)
                };
                for entry in listed {
                    let path = dir.join(&entry.name);
                    if entry.is_dir == dirs && self.is_match(&path) {
                        found.push(path.clone());
                    }
                    if entry.is_dir && depth < self.depth {
                        next.push(path);
                    }
                }
            }
            level = next;
        }
        found.sort();
        found.dedup();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tail::memfs::MemFs;

    fn matches(pattern: &str, path: &str) -> bool {
        Pattern::new(Path::new(pattern))
            .unwrap()
            .is_match(Path::new(path))
    }

    #[test]
    fn wildcards_match_within_one_component() {
        assert!(matches("/l/*.log", "/l/app.log"));
        assert!(matches("/l/app*.log", "/l/app.log"));
        assert!(matches("/l/a?p.log", "/l/app.log"));
        assert!(!matches("/l/*.log", "/l/app.log.1"));
        assert!(!matches("/l/a?p.log", "/l/ap.log"));
        assert!(matches("/l/*/x*.gz", "/l/a/x1.gz"));
        assert!(!matches("/l/*.gz", "/l/a/x1.gz"));
    }

    #[test]
    fn classes_alternatives_and_double_stars() {
        assert!(matches("/l/app.log.[0-9]", "/l/app.log.3"));
        assert!(!matches("/l/app.log.[0-9]", "/l/app.log.gz"));
        assert!(matches("/l/{api,web}.log", "/l/web.log"));
        assert!(matches("/l/**/app.log", "/l/app.log"));
        assert!(matches("/l/**/app.log", "/l/a/b/app.log"));
        assert!(!matches("/l/**/app.log", "/m/app.log"));
    }

    #[test]
    fn a_bad_pattern_is_refused_with_its_text() {
        let err = Pattern::new(Path::new("/l/app[.log")).unwrap_err();
        assert!(err.0.starts_with("/l/app[.log: "), "{err}");
    }

    #[test]
    fn double_stars_expand_through_directories_and_name_their_base() {
        let fs = MemFs::default();
        for dir in ["/l", "/l/a", "/l/a/b", "/m"] {
            fs.mkdir(Path::new(dir));
        }
        for file in ["/l/app.log", "/l/a/b/app.log", "/l/a/other", "/m/app.log"] {
            fs.create(Path::new(file));
        }
        let mut handle = fs.clone();
        let p = Pattern::new(Path::new("/l/**/app.log")).unwrap();
        assert_eq!(
            p.expand(&mut handle, false),
            [PathBuf::from("/l/a/b/app.log"), PathBuf::from("/l/app.log")]
        );
        assert_eq!(
            p.dirs(&mut handle),
            [
                PathBuf::from("/l"),
                PathBuf::from("/l/a"),
                PathBuf::from("/l/a/b")
            ]
        );
        let flat = Pattern::new(Path::new("/l/*.log")).unwrap();
        assert_eq!(
            flat.expand(&mut handle, false),
            [PathBuf::from("/l/app.log")]
        );
        assert_eq!(flat.dirs(&mut handle), [PathBuf::from("/l")]);
    }
}
