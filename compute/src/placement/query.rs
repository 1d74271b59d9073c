//! Query strings as Placement reads them: `resources=VCPU:1,MEMORY_MB:512`,
//! `required=HW_CPU_X86_AVX,!CUSTOM_SLOW,in:A,B` (forbidden traits at 1.22,
//! `in:` at 1.39), `member_of=in:agg1,agg2` (repeatable at 1.24, `!` at
//! 1.32). Pure parsing into filters the list and candidate logic apply.

use super::catalog;
use super::error::{Code, PlacementError, PlacementResult};
use super::microversion::Version;
use super::service::canonical_uuid;
use super::state::State;
use std::collections::{BTreeMap, BTreeSet};

/// A parsed query string: every `key=value` in order (keys repeat).
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Decodes a raw query string (`None`: there was none).
    pub fn parse(raw: Option<&str>) -> Params {
        Params(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// Every value of `key`.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The one value of `key`; given twice is Placement's 400.
    pub fn one<'a>(&'a self, key: &'a str) -> PlacementResult<Option<&'a str>> {
        let mut it = self.all(key);
        let first = it.next();
        if it.next().is_some() {
            return Err(PlacementError::BadRequest {
                code: Code::DuplicateKey,
                message: format!("Query parameter '{key}' may be specified only once."),
            });
        }
        Ok(first)
    }

    /// The distinct keys, in first-seen order.
    pub fn keys(&self) -> Vec<&str> {
        let mut seen = Vec::new();
        for (k, _) in &self.0 {
            if !seen.contains(&k.as_str()) {
                seen.push(k.as_str());
            }
        }
        seen
    }
}

/// Which traits a provider (or a set of providers) must, must not, or must
/// have one of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraitFilter {
    /// Every one of these.
    pub all: BTreeSet<String>,
    /// None of these (`!TRAIT`).
    pub forbidden: BTreeSet<String>,
    /// At least one of each set (`in:A,B`).
    pub any_of: Vec<BTreeSet<String>>,
}

impl TraitFilter {
    /// Nothing asked.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.forbidden.is_empty() && self.any_of.is_empty()
    }

    /// Whether `traits` satisfies every part.
    pub fn matches(&self, traits: &BTreeSet<String>) -> bool {
        self.all.iter().all(|t| traits.contains(t))
            && !self.forbidden.iter().any(|t| traits.contains(t))
            && self
                .any_of
                .iter()
                .all(|set| set.iter().any(|t| traits.contains(t)))
    }

    /// The required and `in:` halves only (the forbidden half applies to
    /// each provider, the rest to a group's providers together).
    pub fn matches_union(&self, mut has: impl FnMut(&str) -> bool) -> bool {
        self.all.iter().all(|t| has(t)) && self.any_of.iter().all(|set| set.iter().any(|t| has(t)))
    }
}

/// Which aggregates a provider must be in (one of each set) and must not be in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggFilter {
    /// In at least one of each set.
    pub any_of: Vec<BTreeSet<String>>,
    /// In none of these.
    pub none_of: BTreeSet<String>,
}

impl AggFilter {
    /// Nothing asked.
    pub fn is_empty(&self) -> bool {
        self.any_of.is_empty() && self.none_of.is_empty()
    }

    /// Whether a provider in `aggs` passes.
    pub fn matches(&self, aggs: &BTreeSet<String>) -> bool {
        self.within(aggs) && !self.excluded(aggs)
    }

    /// The positive half: in one aggregate of each `in:` set.
    pub fn within(&self, aggs: &BTreeSet<String>) -> bool {
        self.any_of
            .iter()
            .all(|set| set.iter().any(|a| aggs.contains(a)))
    }

    /// The negative half: in one of the forbidden aggregates.
    pub fn excluded(&self, aggs: &BTreeSet<String>) -> bool {
        self.none_of.iter().any(|a| aggs.contains(a))
    }
}

/// Whether `rc` names a class this placement knows.
pub fn known_class(st: &State, rc: &str) -> bool {
    catalog::is_standard_class(rc) || st.classes.contains(rc)
}

/// `VCPU:2,MEMORY_MB:1024` -> class -> amount. Amounts are positive
/// integers; a class given twice, or one that does not exist, is a 400.
pub fn resources(st: &State, key: &str, text: &str) -> PlacementResult<BTreeMap<String, u64>> {
    // Placement's words: the part at fault after `Got:`.
    let malformed = |got: &str| {
        PlacementError::bad_query(format!(
            "Badly formed resources parameter. Expected resources query string parameter \
             in form: ?{key}=VCPU:2,MEMORY_MB:1024. Got: {got}."
        ))
    };
    if text.trim().is_empty() {
        return Err(malformed("empty string"));
    }
    let mut out = BTreeMap::new();
    for part in text.split(',') {
        let (rc, n) = part.split_once(':').ok_or_else(|| malformed(part))?;
        let (rc, n) = (rc.trim(), n.trim());
        if rc.is_empty() {
            return Err(malformed(part));
        }
        let amount: u64 = match n.parse::<i64>() {
            Ok(a) if a >= 1 => a as u64,
            Ok(a) => {
                return Err(PlacementError::bad_query(format!(
                    "Requested resource {rc} requires amount >= 1. Got: {a}."
                )))
            }
            // Past i64 but a whole number: larger than any inventory.
            Err(_) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                n.parse().unwrap_or(u64::MAX)
            }
            Err(_) => {
                return Err(PlacementError::bad_query(format!(
                    "Requested resource {rc} expected positive integer amount. Got: {n}."
                )))
            }
        };
        if !known_class(st, rc) {
            return Err(PlacementError::bad_query(format!(
                "Invalid resource class in resources parameter: No such resource class {rc}."
            )));
        }
        if out.insert(rc.to_string(), amount).is_some() {
            return Err(malformed(part));
        }
    }
    Ok(out)
}

/// The `required` values of one group, AND-ed. `!T` needs 1.22, `in:` 1.39.
pub fn required<'a>(
    st: &State,
    version: Version,
    key: &str,
    values: impl IntoIterator<Item = &'a str>,
) -> PlacementResult<TraitFilter> {
    let mut f = TraitFilter::default();
    let mut unknown = BTreeSet::new();
    let mut known = |t: &str| {
        if !(catalog::is_standard_trait(t) || st.traits.contains(t)) {
            unknown.insert(t.to_string());
        }
    };
    for value in values {
        let invalid = || {
            let form = if version.at_least(22) {
                "HW_CPU_X86_VMX,!CUSTOM_MAGIC"
            } else {
                "HW_CPU_X86_VMX,CUSTOM_MAGIC"
            };
            PlacementError::bad_query(format!(
                "Invalid query string parameters: Expected '{key}' parameter value of the form: \
                 {form}. Got: {value}"
            ))
        };
        if let Some(list) = value.strip_prefix("in:") {
            if !version.at_least(39) {
                return Err(PlacementError::bad_query(
                    "The format 'in:HW_CPU_X86_VMX,CUSTOM_MAGIC' only supported since \
                     microversion 1.39.",
                ));
            }
            let set: BTreeSet<String> = list
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect();
            if set.is_empty() || set.iter().any(|t| t.starts_with('!')) {
                return Err(invalid());
            }
            set.iter().for_each(|t| known(t));
            f.any_of.push(set);
            continue;
        }
        for t in value.split(',').map(str::trim) {
            match t.strip_prefix('!') {
                Some(_) if !version.at_least(22) => return Err(invalid()),
                Some("") => return Err(invalid()),
                Some(name) => {
                    known(name);
                    f.forbidden.insert(name.to_string());
                }
                None if t.is_empty() => return Err(invalid()),
                None => {
                    known(t);
                    f.all.insert(t.to_string());
                }
            }
        }
    }
    if !unknown.is_empty() {
        let names: Vec<_> = unknown.into_iter().collect();
        return Err(PlacementError::bad_query(format!(
            "No such trait(s): {}.",
            names.join(", ")
        )));
    }
    if let Some(t) = f.all.intersection(&f.forbidden).next() {
        // Placement words root_required's conflict on its own.
        return Err(PlacementError::bad_query(if key == "root_required" {
            format!("Conflicting required and forbidden traits found in root_required: {t}")
        } else {
            format!(
                "Conflicting required and forbidden traits found in the following traits \
                 keys: {key}: ({t})"
            )
        }));
    }
    Ok(f)
}

/// The `member_of` values of one group: `UUID`, `in:U1,U2` (1.21 on
/// candidates, 1.3 on providers), repeated = AND (1.24), `!...` (1.32).
pub fn member_of<'a>(
    version: Version,
    values: impl IntoIterator<Item = &'a str>,
) -> PlacementResult<AggFilter> {
    let mut f = AggFilter::default();
    let mut count = 0;
    for value in values {
        count += 1;
        if count > 1 && !version.at_least(24) {
            return Err(PlacementError::BadRequest {
                code: Code::DuplicateKey,
                message: "Multiple member_of parameters are not supported at this \
                          microversion (1.24 or later)."
                    .into(),
            });
        }
        let (negative, rest) = match value.strip_prefix('!') {
            Some(r) if version.at_least(32) => (true, r),
            Some(_) => {
                return Err(PlacementError::bad_query(format!(
                    "Invalid query string parameters: Forbidden member_of parameters are not \
                     supported in the specified microversion (1.32 or later). Got: {value}"
                )))
            }
            None => (false, value),
        };
        let list =
            match rest.strip_prefix("in:") {
                Some(list) => list,
                None if rest.contains(',') => return Err(PlacementError::bad_query(
                    "Multiple values for 'member_of' must be prefixed with the 'in:' or '!in:' \
                     keyword using the valid microversion.",
                )),
                None => rest,
            };
        let mut set = BTreeSet::new();
        for u in list.split(',') {
            let u = canonical_uuid(u.trim()).ok_or_else(|| {
                PlacementError::bad_query(format!(
                    "Invalid query string parameters: Expected 'member_of' parameter to \
                     contain valid UUID(s). Got: {value}"
                ))
            })?;
            set.insert(u);
        }
        if negative {
            if rest.starts_with("in:") || set.len() == 1 {
                f.none_of.extend(set);
            } else {
                return Err(PlacementError::bad_query(format!(
                    "Invalid query string parameters: Multiple forbidden aggregates need \
                     'in:': !in:A,B. Got: {value}"
                )));
            }
        } else {
            f.any_of.push(set);
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::microversion::MAX;

    #[test]
    fn resources_parse_and_refuse() {
        let st = State::default();
        let r = resources(&st, "resources", "VCPU:2,MEMORY_MB:1024").unwrap();
        assert_eq!(r["VCPU"], 2);
        assert_eq!(r["MEMORY_MB"], 1024);
        for bad in ["VCPU", "VCPU:x", "VCPU:0", "VCPU:1,VCPU:2", ":1", "VCPU:-1"] {
            assert!(resources(&st, "resources", bad).is_err(), "{bad}");
        }
        assert!(resources(&st, "resources", "CUSTOM_NOPE:1").is_err());
    }

    #[test]
    fn required_traits() {
        let st = State::default();
        let f = required(&st, MAX, "required", ["HW_CPU_X86_AVX,!HW_CPU_X86_SSE"]).unwrap();
        assert!(f.all.contains("HW_CPU_X86_AVX") && f.forbidden.contains("HW_CPU_X86_SSE"));
        let f = required(&st, MAX, "required", ["in:HW_CPU_X86_AVX,HW_CPU_X86_AVX2"]).unwrap();
        assert_eq!(f.any_of.len(), 1);
        assert!(required(&st, Version::new(1, 21), "required", ["!HW_CPU_X86_SSE"]).is_err());
        assert!(required(&st, Version::new(1, 38), "required", ["in:HW_CPU_X86_AVX"]).is_err());
        assert!(required(&st, MAX, "required", ["CUSTOM_NOPE"]).is_err());
        assert!(required(&st, MAX, "required", ["HW_CPU_X86_AVX,!HW_CPU_X86_AVX"]).is_err());
    }

    #[test]
    fn member_of_forms() {
        let a = "11111111-1111-1111-1111-111111111111";
        let b = "22222222-2222-2222-2222-222222222222";
        let f = member_of(MAX, [format!("in:{a},{b}").as_str(), a]).unwrap();
        assert_eq!(f.any_of.len(), 2);
        let f = member_of(MAX, [format!("!{a}").as_str()]).unwrap();
        assert!(f.none_of.contains(a));
        assert!(member_of(Version::new(1, 23), [a, b]).is_err());
        assert!(member_of(MAX, ["not-a-uuid"]).is_err());
    }
}
