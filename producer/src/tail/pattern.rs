//! Glob patterns of file sources: `*` (any run of characters but `/`) and `?` (one
//! character) in any path component, e.g. `/var/log/*/app*.log`. There is no `**`
//! and no character classes; a component without wildcards is taken literally.

use std::path::{Component, Path, PathBuf};

use super::fs::TailFs;

/// True if `pattern` has a wildcard (and so must be expanded against a directory).
fn is_wild(component: &str) -> bool {
    component.contains(['*', '?'])
}

/// Whether `name` matches one pattern component.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with one backtrack point for the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// What a pattern names now, sorted: files, or directories if `dirs`.
pub fn expand<F: TailFs>(fs: &mut F, pattern: &Path, dirs: bool) -> Vec<PathBuf> {
    let mut current = vec![PathBuf::new()];
    let components: Vec<Component> = pattern.components().collect();
    for (i, component) in components.iter().enumerate() {
        let last = i + 1 == components.len();
        let Component::Normal(part) = component else {
            current.iter_mut().for_each(|p| p.push(component));
            continue;
        };
        let want_dir = !last || dirs;
        let part = part.to_string_lossy();
        if !is_wild(&part) {
            current.iter_mut().for_each(|p| p.push(part.as_ref()));
            continue;
        }
        let mut next = Vec::new();
        for dir in &current {
            let listed = if dir.as_os_str().is_empty() {
                fs.list_dir(Path::new("."))
            } else {
                fs.list_dir(dir)
            };
            for entry in listed {
                if entry.is_dir == want_dir && matches(&part, &entry.name) {
                    next.push(dir.join(&entry.name));
                }
            }
        }
        current = next;
    }
    current.sort();
    current.dedup();
    current
}

/// Whether `path` is one of the paths `pattern` names (component by component).
pub fn path_matches(pattern: &Path, path: &Path) -> bool {
    let p: Vec<_> = pattern.components().collect();
    let c: Vec<_> = path.components().collect();
    p.len() == c.len()
        && p.iter().zip(&c).all(|(p, c)| {
            matches(
                &p.as_os_str().to_string_lossy(),
                &c.as_os_str().to_string_lossy(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_within_one_component() {
        assert!(matches("*.log", "app.log"));
        assert!(matches("app*.log", "app.log"));
        assert!(matches("a?p.log", "app.log"));
        assert!(matches("*", ""));
        assert!(!matches("*.log", "app.log.1"));
        assert!(!matches("a?p.log", "ap.log"));
        assert!(matches("*a*b", "xaxxab"));
        assert!(!matches("*a*b", "xaxxa"));
        assert!(path_matches(
            Path::new("/l/*/x*.gz"),
            Path::new("/l/a/x1.gz")
        ));
        assert!(!path_matches(Path::new("/l/*.gz"), Path::new("/l/a/x1.gz")));
    }
}
