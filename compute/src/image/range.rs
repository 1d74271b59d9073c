//! The `Range` header of a download, as Glance reads it: one byte range
//! (`bytes=a-b`, `bytes=a-`, or the suffix `bytes=-n`), answered with 206
//! and `Content-Range`; several ranges, a malformed one or one outside the
//! data are 416. Pure: header text and data size in, span out.

use super::error::{ImageError, ImageResult};

/// Bytes `start..=end` of the data (both inclusive, as `Content-Range` says them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

impl Span {
    /// Bytes in the span.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Never true: a span holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `Content-Range` value for data of `size` bytes.
    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{size}", self.start, self.end)
    }
}

fn unsatisfiable(header: &str, size: u64) -> ImageError {
    ImageError::RangeNotSatisfiable {
        message: format!(
            "Requested range '{header}' not satisfiable for an image of {size} bytes."
        ),
        size,
    }
}

/// The span `header` asks for of data of `size` bytes. An end past the data
/// is cut to its last byte (RFC 9110); a start past it is a 416.
pub fn parse(header: &str, size: u64) -> ImageResult<Span> {
    let bad = || unsatisfiable(header, size);
    let spec = header.trim().strip_prefix("bytes=").ok_or_else(bad)?.trim();
    if spec.contains(',') {
        return Err(ImageError::RangeNotSatisfiable {
            message: "Multi-range requests are not supported.".into(),
            size,
        });
    }
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let num = |s: &str| -> ImageResult<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let span = match (a.trim(), b.trim()) {
        ("", n) => {
            let n = num(n)?;
            if n == 0 || size == 0 {
                return Err(bad());
            }
            Span {
                start: size.saturating_sub(n),
                end: size - 1,
            }
        }
        (a, "") => Span {
            start: num(a)?,
            end: size.saturating_sub(1),
        },
        (a, b) => {
            let (start, end) = (num(a)?, num(b)?);
            if end < start {
                return Err(bad());
            }
            Span {
                start,
                end: end.min(size.saturating_sub(1)),
            }
        }
    };
    if span.start >= size {
        return Err(bad());
    }
    Ok(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(h: &str, size: u64) -> Option<(u64, u64)> {
        parse(h, size).ok().map(|s| (s.start, s.end))
    }

    #[test]
    fn one_range_in_each_form() {
        // Glance's functional test: "bytes=3-10" of the alphabet is DEFGHIJK.
        assert_eq!(span("bytes=3-10", 26), Some((3, 10)));
        assert_eq!(parse("bytes=3-10", 26).unwrap().len(), 8);
        assert_eq!(span("bytes=20-", 26), Some((20, 25)));
        assert_eq!(span("bytes=-2", 26), Some((24, 25)));
        assert_eq!(span("bytes=-100", 26), Some((0, 25)));
        assert_eq!(span("bytes=0-1000", 26), Some((0, 25)));
        assert_eq!(span(" bytes=0-0 ", 26), Some((0, 0)));
        assert_eq!(
            parse("bytes=3-10", 26).unwrap().content_range(26),
            "bytes 3-10/26"
        );
    }

    #[test]
    fn the_rest_is_416() {
        for h in [
            "bytes=10-5",
            "bytes=26-",
            "bytes=30-40",
            "bytes=-0",
            "bytes=0-1,3-4",
            "bytes=a-b",
            "bytes=+1-2",
            "items=0-1",
            "bytes=5",
            "bytes=-",
            "",
        ] {
            assert!(
                matches!(
                    parse(h, 26),
                    Err(ImageError::RangeNotSatisfiable { size: 26, .. })
                ),
                "{h}"
            );
        }
        assert!(parse("bytes=0-", 0).is_err(), "nothing to give of no data");
    }
}
