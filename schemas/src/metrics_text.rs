//! Prometheus text exposition helpers every role's metrics share.

/// A label value as the exposition format wants it: backslash, double quote and
/// newline escaped, so no agent id, file path or topic name can break a scrape.
pub fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_cannot_break_the_exposition() {
        assert_eq!(super::label_value("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
        assert_eq!(super::label_value("host-a"), "host-a");
    }
}
