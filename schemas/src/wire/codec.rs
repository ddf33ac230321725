//! Bounds-checked little-endian reading and writing shared by every binary format.
//!
//! Contract: a [`Reader`] never panics and never reads past its slice; every failure
//! is a [`CodecError`] naming the field and offset.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum CodecError {
    #[error("truncated: need {need} more bytes for {field} at offset {at}")]
    Short {
        field: &'static str,
        at: usize,
        need: usize,
    },
    #[error("{field} at offset {at}: {why}")]
    Invalid {
        field: &'static str,
        at: usize,
        why: String,
    },
    #[error("{extra} trailing bytes after the last field")]
    Trailing { extra: usize },
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], CodecError> {
        let rest = self.remaining();
        if rest < n {
            return Err(CodecError::Short {
                field,
                at: self.pos,
                need: n - rest,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, field)?);
        Ok(out)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, CodecError> {
        Ok(self.array::<1>(field)?[0])
    }
    pub fn u16(&mut self, field: &'static str) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    pub fn u32(&mut self, field: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    pub fn u64(&mut self, field: &'static str) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    pub fn i64(&mut self, field: &'static str) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.array(field)?))
    }

    /// A `u32` hour number that must be a valid `Hour` (at most `Hour::MAX`).
    pub fn hour(&mut self, field: &'static str) -> Result<crate::Hour, CodecError> {
        let n = self.u32(field)?;
        crate::Hour::checked(n)
            .ok_or_else(|| self.invalid(field, format!("hour {n} is past {}", crate::Hour::MAX)))
    }

    /// Milliseconds since the epoch that must lie in 1970..=9999 (`Hour::valid_unix_ms`).
    pub fn unix_ms(&mut self, field: &'static str) -> Result<i64, CodecError> {
        let ms = self.i64(field)?;
        if !crate::Hour::valid_unix_ms(ms) {
            return Err(self.invalid(field, format!("time {ms} ms is outside 1970..=9999")));
        }
        Ok(ms)
    }

    /// Reads `n` bytes that must be UTF-8.
    pub fn str(&mut self, n: usize, field: &'static str) -> Result<&'a str, CodecError> {
        let at = self.pos;
        let raw = self.bytes(n, field)?;
        std::str::from_utf8(raw).map_err(|e| CodecError::Invalid {
            field,
            at,
            why: format!("not UTF-8 ({e})"),
        })
    }

    /// A name with a one-byte length that must be 1..=255 bytes of UTF-8.
    pub fn short_name(&mut self, field: &'static str) -> Result<&'a str, CodecError> {
        let n = self.u8(field)? as usize;
        self.nonempty_str(n, field)
    }

    /// An agent id: a short name in the documented charset (`origin::check_id`); ids
    /// become label values and object names.
    pub fn agent_id(&mut self) -> Result<&'a str, CodecError> {
        let id = self.short_name("agent_id")?;
        crate::origin::check_id(id).map_err(|why| self.invalid("agent_id", why.to_string()))?;
        Ok(id)
    }

    pub fn nonempty_str(&mut self, n: usize, field: &'static str) -> Result<&'a str, CodecError> {
        if n == 0 {
            return Err(self.invalid(field, "must not be empty"));
        }
        self.str(n, field)
    }

    pub fn invalid(&self, field: &'static str, why: impl Into<String>) -> CodecError {
        CodecError::Invalid {
            field,
            at: self.pos,
            why: why.into(),
        }
    }

    /// Fails unless every byte was consumed.
    pub fn finish(self) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(CodecError::Trailing { extra }),
        }
    }
}

/// Appends a name with a one-byte length. Callers check it with [`check_short_name`].
pub(crate) fn put_short_name(out: &mut Vec<u8>, name: &str) {
    debug_assert!(!name.is_empty() && name.len() <= 255);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

/// Checks a name that travels with a one-byte length.
pub(crate) fn check_short_name(field: &'static str, name: &str) -> Result<(), CodecError> {
    if name.is_empty() || name.len() > 255 {
        return Err(CodecError::Invalid {
            field,
            at: 0,
            why: format!("must be 1..=255 bytes, is {}", name.len()),
        });
    }
    Ok(())
}

/// Checks a 4-byte magic and a 1-byte version at the start of a message: the version
/// must be one of `versions` (what this build reads); returns it.
pub(crate) fn expect_header(
    r: &mut Reader<'_>,
    magic: &[u8; 4],
    versions: &[u8],
) -> Result<u8, CodecError> {
    let got = r.bytes(4, "magic")?;
    if got != magic {
        return Err(CodecError::Invalid {
            field: "magic",
            at: 0,
            why: format!(
                "expected {:?}, found {:?}",
                String::from_utf8_lossy(magic),
                String::from_utf8_lossy(got)
            ),
        });
    }
    let v = r.u8("version")?;
    if !versions.contains(&v) {
        return Err(CodecError::Invalid {
            field: "version",
            at: 4,
            why: format!("unsupported version {v} (this build reads {versions:?})"),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_name_the_field() {
        let mut r = Reader::new(&[1, 2, 3]);
        let err = r.u32("batch_seq").unwrap_err();
        assert_eq!(
            err,
            CodecError::Short {
                field: "batch_seq",
                at: 0,
                need: 1
            }
        );
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut r = Reader::new(&[1, 2]);
        r.u8("a").unwrap();
        assert_eq!(r.finish(), Err(CodecError::Trailing { extra: 1 }));
    }

    #[test]
    fn unknown_versions_are_refused() {
        let mut r = Reader::new(b"EVDA\x02");
        let err = expect_header(&mut r, b"EVDA", &[1]).unwrap_err();
        assert!(err.to_string().contains("unsupported version 2"), "{err}");
    }
}
