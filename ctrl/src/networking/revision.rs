//! Neutron's `revision-if-match` extension: an update or delete sent with
//! `If-Match: revision_number=N` happens only while the resource is still at
//! revision N (412 otherwise), so clients can do compare-and-swap writes
//! without a lock. Pure functions; the handlers in api.rs call them inside
//! the write, where the revision read is the one the commit is based on.

use super::error::{NetError, NetResult};
use axum::http::HeaderMap;

/// The revision an `If-Match` header constrains a write to, if any. Etags
/// other than `revision_number=N` are ignored, as Neutron does; two of them,
/// or one that is not a number, are a 400.
/// The number may be negative (a client's `current - 1` at revision 0): it
/// then matches nothing.
pub fn constraint(headers: &HeaderMap) -> NetResult<Option<i64>> {
    let mut want = None;
    for value in headers.get_all(axum::http::header::IF_MATCH) {
        let value = value
            .to_str()
            .map_err(|_| NetError::bad("HTTPBadRequest", "If-Match is not ASCII"))?;
        for etag in value.split(',') {
            let etag = etag.trim().trim_start_matches("W/").trim_matches('"');
            let Some(n) = etag.strip_prefix("revision_number=") else {
                continue;
            };
            if want.is_some() {
                return Err(NetError::bad(
                    "HTTPBadRequest",
                    "Multiple revision_number etags are not supported.",
                ));
            }
            want = Some(n.parse::<i64>().map_err(|_| {
                NetError::bad(
                    "HTTPBadRequest",
                    "Revision number etag must be in the format of revision_number=<int>",
                )
            })?);
        }
    }
    Ok(want)
}

/// Whether a resource at revision `current` may be written under `want`.
pub fn check(want: Option<i64>, current: u64) -> NetResult<()> {
    match want {
        Some(w) if i64::try_from(current).ok() != Some(w) => Err(NetError::PreconditionFailed {
            message: format!("Constrained to {w}, but current revision is {current}"),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(axum::http::header::IF_MATCH, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn parses_the_revision_etag_and_ignores_others() {
        assert_eq!(constraint(&headers(&[])), Ok(None));
        assert_eq!(constraint(&headers(&["revision_number=3"])), Ok(Some(3)));
        assert_eq!(
            constraint(&headers(&["\"abc\", \"revision_number=7\""])),
            Ok(Some(7))
        );
        assert_eq!(constraint(&headers(&["*"])), Ok(None));
        assert_eq!(constraint(&headers(&["revision_number=-1"])), Ok(Some(-1)));
        assert!(constraint(&headers(&["revision_number=x"])).is_err());
        assert!(constraint(&headers(&["revision_number=1", "revision_number=2"])).is_err());
    }

    #[test]
    fn only_the_current_revision_passes() {
        assert_eq!(check(None, 4), Ok(()));
        assert_eq!(check(Some(4), 4), Ok(()));
        assert!(matches!(
            check(Some(3), 4),
            Err(NetError::PreconditionFailed { .. })
        ));
        assert!(check(Some(-1), 0).is_err());
    }
}
