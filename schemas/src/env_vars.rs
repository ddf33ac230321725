//! `${VAR}` in configuration files, replaced from the environment before the TOML is
//! read (pure: the caller passes the lookup).
//!
//! - `${NAME}`: the variable's value; unset is an error naming the line.
//! - `${NAME:-default}`: the value, or `default` when unset or empty.
//! - `$${`: a literal `${`.
//!
//! Values are inserted verbatim, so one inside a TOML string must not contain `"` or
//! `\` unescaped; a value with a line break is refused (lines must keep their
//! numbers for error messages). Comments (`#` outside a string, to the end of the
//! line) are left alone.

use crate::toml_source::SourceError;

/// `text` with every `${…}` outside comments replaced.
pub fn interpolate(
    origin: &str,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, SourceError> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let error = |message: String| SourceError {
            origin: origin.to_string(),
            line: Some(index + 1),
            key: String::new(),
            message,
        };
        let (code, comment) = line.split_at(comment_start(line));
        let mut rest = code;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at..];
            if let Some(tail) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = tail;
            } else if let Some(tail) = after.strip_prefix("${") {
                let end = tail
                    .find('}')
                    .ok_or_else(|| error("`${` without its closing `}`".into()))?;
                let value = value_of(&tail[..end], &lookup).map_err(error)?;
                out.push_str(&value);
                rest = &tail[end + 1..];
            } else {
                out.push('$');
                rest = &after[1..];
            }
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    Ok(out)
}

/// The value `${inside}` stands for: `inside` is `NAME` or `NAME:-default`; an unset
/// or empty variable takes the default. The error is the message for the line.
fn value_of(inside: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match inside.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inside, None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "`${{{name}}}`: a variable name is letters, digits and `_`"
        ));
    }
    let value = match (lookup(name).filter(|v| !v.is_empty()), default) {
        (Some(v), _) => v,
        (None, Some(d)) => d.to_string(),
        (None, None) => {
            return Err(format!(
                "environment variable {name} is not set (write ${{{name}:-default}} for a default)"
            ));
        }
    };
    if value.contains(['\n', '\r']) {
        return Err(format!("environment variable {name} holds a line break"));
    }
    Ok(value)
}

/// Where a TOML comment starts on `line` (its length when there is none): the first
/// `#` outside a basic (`"…"`, with escapes) or literal (`'…'`) string.
fn comment_start(line: &str) -> usize {
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return i,
            None => {}
        }
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "NODE_NAME" => Some("node-7".into()),
            "EMPTY" => Some(String::new()),
            "BROKEN" => Some("a\nb".into()),
            _ => None,
        }
    }

    #[test]
    fn variables_defaults_escapes_and_comments() {
        let text = "agent_id = \"${NODE_NAME}\" # from ${NOT_SET}\nport = \"${PORT:-9464}\"\ne = \"${EMPTY:-x}\"\nlit = \"$${HOME} costs $5\"\nhash = \"#${NODE_NAME}\"\n";
        let out = interpolate("a.toml", text, env).unwrap();
        assert_eq!(
            out,
            "agent_id = \"node-7\" # from ${NOT_SET}\nport = \"9464\"\ne = \"x\"\nlit = \"${HOME} costs $5\"\nhash = \"#node-7\"\n"
        );
    }

    #[test]
    fn unset_malformed_and_multi_line_values_name_their_line() {
        let err = interpolate("a.toml", "x = 1\ny = \"${KAFKA_BOOTSTRAP}\"\n", env).unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(
            err.to_string()
                .starts_with("a.toml:2: environment variable KAFKA_BOOTSTRAP is not set"),
            "{err}"
        );
        for bad in [
            "y = \"${NODE_NAME\"",
            "y = \"${}\"",
            "y = \"${A-B}\"",
            "y = \"${BROKEN}\"",
        ] {
            let err = interpolate("a.toml", bad, env).unwrap_err();
            assert_eq!(err.line, Some(1), "{bad}: {err}");
        }
    }
}
