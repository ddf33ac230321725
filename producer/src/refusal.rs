//! Why the agent refused a line: a stable reason (the metric and the client's error
//! code) and a detail for people. Socket clients see `"<reason>: <detail>"` in the
//! `error` field of the line's answer; that text is the wire protocol and unchanged.

use evd_schemas::error::Reason;

/// A refused line. Retrying the same bytes never helps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRefusal {
    pub reason: Reason,
    pub detail: String,
}

impl LineRefusal {
    pub fn new(reason: Reason, detail: impl Into<String>) -> LineRefusal {
        LineRefusal {
            reason,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for LineRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl From<evd_schemas::Error> for LineRefusal {
    fn from(e: evd_schemas::Error) -> LineRefusal {
        match e {
            evd_schemas::Error::Rejected { reason, source } => {
                LineRefusal::new(reason, source.to_string())
            }
            // Not produced by line parsing or validation; kept whole if it ever is.
            other => LineRefusal::new(Reason::Malformed, other.to_string()),
        }
    }
}

/// The reasons a line can be refused for, in the order the tailer counts them.
pub const LINE_REASONS: [Reason; 4] = [
    Reason::Json,
    Reason::UnknownType,
    Reason::Schema,
    Reason::TooLarge,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_errors_keep_their_reason_and_the_wire_text_is_reason_colon_detail() {
        let parsed = evd_schemas::event::parse_event_line(b"[1]", 100).unwrap_err();
        let refusal = LineRefusal::from(parsed);
        assert_eq!(refusal.reason, Reason::Json);
        assert_eq!(refusal.to_string(), "json: not a JSON object");
        let long = evd_schemas::event::parse_event_line(&[b' '; 20], 10).unwrap_err();
        assert_eq!(LineRefusal::from(long).reason, Reason::TooLarge);
    }
}
