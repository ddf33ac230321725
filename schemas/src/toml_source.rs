//! TOML text with a name, so every configuration error says `file:line: key `a.b[2].c`: why`.
//!
//! Serde errors get their key path from `serde_path_to_error` and their line from the
//! span of that key in the document; semantic errors found after deserializing use
//! [`TomlSource::error_at_key`] with the same path syntax.

use serde::de::DeserializeOwned;
use toml_edit::{ImDocument, Item, Table, TableLike};

/// A configuration error located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    pub origin: String,
    /// 1-based line, when the key could be located.
    pub line: Option<usize>,
    /// Dotted key path such as `fields[2].type`; empty for whole-file problems.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "key `{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for SourceError {}

pub struct TomlSource<'a> {
    origin: &'a str,
    text: &'a str,
}

/// A config file's type: deserialized with `deny_unknown_fields`, then checked as a
/// whole by `validate`.
pub trait ValidatedConfig: DeserializeOwned {
    /// Semantic checks beyond types: the first problem found.
    fn validate(&self) -> Result<(), Invalid>;
}

/// A value that has the right type but does not fit: which key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{key}`: {why}")]
pub struct Invalid {
    /// Dotted key path, as in [`SourceError::key`].
    pub key: &'static str,
    pub why: String,
}

impl Invalid {
    pub fn at(key: &'static str, why: String) -> Invalid {
        Invalid { key, why }
    }
}

impl<'a> TomlSource<'a> {
    pub fn new(origin: &'a str, text: &'a str) -> Self {
        TomlSource { origin, text }
    }

    /// Parses and validates a config file's text; every error names the file, the
    /// line and the key.
    pub fn load_config<T: ValidatedConfig>(origin: &str, text: &str) -> Result<T, SourceError> {
        let source = TomlSource::new(origin, text);
        let config: T = source.deserialize()?;
        config
            .validate()
            .map_err(|invalid| source.error_at_key(invalid.key, &invalid.why))?;
        Ok(config)
    }

    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, SourceError> {
        let de = toml::Deserializer::new(self.text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            let inner = e.inner();
            let line = self
                .line_of_key(&key)
                .or_else(|| inner.span().map(|s| self.line_of_offset(s.start)));
            SourceError {
                origin: self.origin.to_string(),
                line,
                key,
                message: inner.message().trim().to_string(),
            }
        })
    }

    /// An error about `key` (path syntax as in [`SourceError::key`]).
    pub fn error_at_key(&self, key: &str, message: &str) -> SourceError {
        SourceError {
            origin: self.origin.to_string(),
            line: self.line_of_key(key),
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    fn line_of_offset(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// Finds the line where the key at `path` is written, if it exists.
    fn line_of_key(&self, path: &str) -> Option<usize> {
        if path.is_empty() {
            return None;
        }
        let doc = ImDocument::parse(self.text).ok()?;
        let mut node = Node::Item(doc.as_item());
        let mut span = None;
        for segment in parse_path(path) {
            match (segment, node) {
                (Segment::Key(name), current) => {
                    let table: &dyn TableLike = match current {
                        Node::Item(item) => item.as_table_like()?,
                        Node::Table(table) => table,
                    };
                    let (key, value) = table.get_key_value(name)?;
                    span = key.span().or_else(|| value.span());
                    node = Node::Item(value);
                }
                (Segment::Index(i), Node::Item(item)) => {
                    if let Some(tables) = item.as_array_of_tables() {
                        let table = tables.get(i)?;
                        span = table.span().or(span);
                        node = Node::Table(table);
                    } else {
                        span = item.as_array()?.get(i)?.span().or(span);
                        break;
                    }
                }
                (Segment::Index(_), Node::Table(_)) => return None,
            }
        }
        span.map(|s| self.line_of_offset(s.start))
    }
}

#[derive(Clone, Copy)]
enum Node<'d> {
    Item(&'d Item),
    Table(&'d Table),
}

enum Segment<'p> {
    Key(&'p str),
    Index(usize),
}

/// Splits `a.b[2].c` into `a`, `b`, `2`, `c`; a quoted segment keeps its dots
/// (`kafka.options."sasl.mechanism"`: `kafka`, `options`, `sasl.mechanism`).
fn parse_path(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        let (name, after) = match rest.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        if !name.is_empty() {
            out.push(Segment::Key(name));
        }
        rest = after;
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(close) = inner.find(']') else {
                return out;
            };
            if let Ok(i) = inner[..close].parse() {
                out.push(Segment::Index(i));
            }
            rest = &inner[close + 1..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_dotted_keys_are_located() {
        let text = "a = 1\n[kafka.options]\n\"security.protocol\" = \"SSL\"\n\"sasl.mechanism\" = \"PLAIN\"\n";
        let source = TomlSource::new("agent.toml", text);
        let err = source.error_at_key("kafka.options.\"sasl.mechanism\"", "unknown");
        assert_eq!(err.line, Some(4));
        assert_eq!(
            err.to_string(),
            "agent.toml:4: key `kafka.options.\"sasl.mechanism\"`: unknown"
        );
        assert_eq!(source.error_at_key("fields[2].x", "").line, None);
    }

    #[test]
    fn paths_split_into_keys_and_indices() {
        let names = |p| {
            parse_path(p)
                .into_iter()
                .map(|s| match s {
                    Segment::Key(k) => k.to_string(),
                    Segment::Index(i) => format!("#{i}"),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(names("a.b[2].c"), ["a", "b", "#2", "c"]);
        assert_eq!(names("k.\"x.y\".z"), ["k", "x.y", "z"]);
        assert_eq!(names("sources[0][1]"), ["sources", "#0", "#1"]);
        for odd in ["", ".", "[", "\"", "a[", "a[x]", "\"a\"b", "]]", "a..b"] {
            names(odd);
        }
    }
}
