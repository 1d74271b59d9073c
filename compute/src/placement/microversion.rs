//! The `OpenStack-API-Version: placement X.Y` header: parsing, the range
//! this server speaks, and the answers for a version it does not.
//!
//! As Placement (through microversion_parse) does: no header means the
//! minimum, 1.0; `latest` means the maximum; a malformed value is a 400
//! ("invalid version string"); a well-formed one outside the range is a 406
//! ("Unacceptable version header") whose body carries `min_version` and
//! `max_version`, which clients (osc-placement) use to negotiate.

use std::fmt;

/// A placement microversion, `major.minor`; ordered as versions are
/// (1.10 after 1.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Always 1 for placement.
    pub major: u16,
    /// The microversion proper.
    pub minor: u16,
}

/// The oldest version served.
pub const MIN: Version = Version::new(1, 0);
/// The newest version served (Placement 2023.1 and later also stop at 1.39).
pub const MAX: Version = Version::new(1, 39);

/// The header's name, as Placement spells it in responses.
pub const HEADER: &str = "openstack-api-version";
/// The service type the header's value starts with.
pub const SERVICE_TYPE: &str = "placement";

impl Version {
    /// `major.minor`.
    pub const fn new(major: u16, minor: u16) -> Version {
        Version { major, minor }
    }

    /// Whether this request speaks `1.minor` or later.
    pub fn at_least(self, minor: u16) -> bool {
        self >= Version::new(1, minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Why a requested version cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Not `X.Y` nor `latest` (a 400).
    #[error("invalid version string: {0}")]
    Malformed(String),
    /// Well-formed, outside [`MIN`]..=[`MAX`] (a 406).
    #[error("Unacceptable version header: {0}")]
    Unacceptable(String),
}

/// Parses `X.Y` or `latest` (case-insensitive, as microversion_parse does).
pub fn parse(text: &str) -> Result<Version, VersionError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("latest") {
        return Ok(MAX);
    }
    let bad = || VersionError::Malformed(t.to_string());
    let (major, minor) = t.split_once('.').ok_or_else(bad)?;
    let num = |s: &str| -> Result<u16, VersionError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let v = Version::new(num(major)?, num(minor)?);
    if v < MIN || v > MAX {
        return Err(VersionError::Unacceptable(t.to_string()));
    }
    Ok(v)
}

/// The version a request asks for, from every `OpenStack-API-Version`
/// header value it carries (comma-separated lists allowed, as in
/// `compute 2.1, placement 1.20`); values for other services are ignored.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Version, VersionError> {
    for value in values {
        for part in value.split(',') {
            let mut words = part.split_whitespace();
            let (Some(service), rest) = (words.next(), words.collect::<Vec<_>>()) else {
                continue;
            };
            if service.eq_ignore_ascii_case(SERVICE_TYPE) {
                return parse(&rest.join(" "));
            }
        }
    }
    Ok(MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically() {
        assert!(Version::new(1, 10) > Version::new(1, 9));
        assert!(Version::new(1, 20).at_least(20));
        assert!(!Version::new(1, 19).at_least(20));
    }

    #[test]
    fn header_values() {
        assert_eq!(negotiate([]), Ok(MIN));
        assert_eq!(negotiate(["placement 1.20"]), Ok(Version::new(1, 20)));
        assert_eq!(
            negotiate(["compute 2.1, placement 1.3"]),
            Ok(Version::new(1, 3))
        );
        assert_eq!(negotiate(["compute 2.90"]), Ok(MIN));
        assert_eq!(negotiate(["placement latest"]), Ok(MAX));
        assert_eq!(negotiate(["PLACEMENT LATEST"]), Ok(MAX));
        assert_eq!(
            negotiate(["placement 0.5"]),
            Err(VersionError::Unacceptable("0.5".into()))
        );
        assert_eq!(
            negotiate(["placement 1.40"]),
            Err(VersionError::Unacceptable("1.40".into()))
        );
        assert_eq!(
            negotiate(["placement pony.horse"]),
            Err(VersionError::Malformed("pony.horse".into()))
        );
        assert_eq!(
            negotiate(["placement 1.2.3"]),
            Err(VersionError::Malformed("1.2.3".into()))
        );
        assert_eq!(
            negotiate(["placement"]),
            Err(VersionError::Malformed("".into()))
        );
    }
}
