//! The compute API's microversions: `OpenStack-API-Version: compute 2.N`
//! (or the older `X-OpenStack-Nova-API-Version: 2.N`), from 2.1 to
//! [`MAX`]. No header means 2.1, `latest` means [`MAX`], and anything
//! outside the range is Nova's 406.

use super::error::{ComputeError, ComputeResult};
use axum::http::HeaderMap;

/// The oldest microversion (2.1: the v2.1 API as it first shipped).
pub const MIN: (u32, u32) = (2, 1);
/// The newest microversion this server implements.
pub const MAX: (u32, u32) = (2, 80);

/// The microversion a request asks for.
pub fn requested(headers: &HeaderMap) -> ComputeResult<(u32, u32)> {
    let new = headers
        .get_all("openstack-api-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|v| {
            let mut it = v.split_whitespace();
            (it.next()?.eq_ignore_ascii_case("compute"))
                .then(|| it.next().unwrap_or("").to_string())
        });
    let old = headers
        .get("x-openstack-nova-api-version")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string());
    match new.or(old) {
        None => Ok(MIN),
        Some(v) => parse(&v),
    }
}

/// `2.N`, or `latest`, checked against [`MIN`]..=[`MAX`].
pub fn parse(v: &str) -> ComputeResult<(u32, u32)> {
    if v.eq_ignore_ascii_case("latest") {
        return Ok(MAX);
    }
    let bad = || {
        ComputeError::BadRequest(format!(
            "API Version String {v} is of invalid format. Must be of format MajorNum.MinorNum."
        ))
    };
    let (a, b) = v.split_once('.').ok_or_else(bad)?;
    let want = (
        a.parse::<u32>().map_err(|_| bad())?,
        b.parse::<u32>().map_err(|_| bad())?,
    );
    if want < MIN || want > MAX {
        return Err(ComputeError::NotAcceptable(format!(
            "Version {}.{} is not supported by the API. Minimum is {}.{} and maximum is {}.{}.",
            want.0, want.1, MIN.0, MIN.1, MAX.0, MAX.1
        )));
    }
    Ok(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn header_forms() {
        assert_eq!(requested(&h(&[])).unwrap(), MIN);
        assert_eq!(
            requested(&h(&[("openstack-api-version", "compute 2.55")])).unwrap(),
            (2, 55)
        );
        assert_eq!(
            requested(&h(&[(
                "openstack-api-version",
                "placement 1.2, compute latest"
            )]))
            .unwrap(),
            MAX
        );
        assert_eq!(
            requested(&h(&[("x-openstack-nova-api-version", "2.10")])).unwrap(),
            (2, 10)
        );
        assert!(matches!(
            parse("2.200"),
            Err(ComputeError::NotAcceptable(_))
        ));
        assert!(matches!(parse("3.0"), Err(ComputeError::NotAcceptable(_))));
        assert!(matches!(parse("2.0"), Err(ComputeError::NotAcceptable(_))));
        assert!(matches!(parse("two"), Err(ComputeError::BadRequest(_))));
    }
}
