//! List queries as the API reference describes them: filters by attribute,
//! `fields=`, `sort_key`/`sort_dir`, `limit`/`marker` with `<plural>_links`.
//! Pure functions over rendered resources.

use super::error::{NetError, NetResult};
use serde_json::{json, Value};
use std::cmp::Ordering;

/// Parsed query string (repeated keys kept in order).
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub filters: Vec<(String, Vec<String>)>,
    pub fields: Vec<String>,
    pub sort: Vec<(String, bool)>,
    pub limit: Option<usize>,
    pub marker: Option<String>,
    pub page_reverse: bool,
    /// Every parameter as given, in order: page links repeat them (filters,
    /// `fields`, sorts) with only the marker and direction changed.
    pub raw: Vec<(String, String)>,
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(kv), String::new()),
        })
        .collect()
}

impl Query {
    pub fn parse(raw: &str) -> NetResult<Query> {
        let mut q = Query::default();
        let mut keys = Vec::new();
        let mut dirs = Vec::new();
        q.raw = parse_pairs(raw);
        for (k, v) in q.raw.clone() {
            match k.as_str() {
                "fields" => q
                    .fields
                    .extend(v.split(',').filter(|s| !s.is_empty()).map(String::from)),
                "sort_key" => keys.push(v),
                "sort_dir" => {
                    if v != "asc" && v != "desc" {
                        return Err(NetError::invalid(
                            "sort_dir",
                            format!("'{v}' is not in ['asc', 'desc']"),
                        ));
                    }
                    dirs.push(v == "asc");
                }
                "limit" => {
                    let n: i64 = v.parse().map_err(|_| {
                        NetError::invalid("limit", format!("'{v}' is not an integer"))
                    })?;
                    if n < 0 {
                        return Err(NetError::invalid("limit", "limit must be >= 0"));
                    }
                    // limit=0 means "no limit" in Neutron.
                    q.limit = (n > 0).then_some(n as usize);
                }
                "marker" => q.marker = Some(v),
                "page_reverse" => q.page_reverse = v.eq_ignore_ascii_case("true"),
                _ => match q.filters.iter_mut().find(|(fk, _)| *fk == k) {
                    Some((_, vals)) => vals.push(v),
                    None => q.filters.push((k, vec![v])),
                },
            }
        }
        if !dirs.is_empty() && dirs.len() != keys.len() {
            return Err(NetError::invalid(
                "sort_dir",
                "the number of sort_keys and sort_dirs must be the same",
            ));
        }
        q.sort = keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, dirs.get(i).copied().unwrap_or(true)))
            .collect();
        Ok(q)
    }
}

fn scalar_matches(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Bool(b) => want.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Value::Number(n) => n.to_string() == want,
        Value::Null => want.is_empty() || want == "None",
        Value::Array(a) => a.iter().any(|x| scalar_matches(x, want)),
        Value::Object(_) => false,
    }
}

/// `fixed_ips=ip_address=10.0.0.3` style filters on lists of objects.
fn matches(v: &Value, want: &str) -> bool {
    if let Value::Array(items) = v {
        if let Some((k, want)) = want.split_once('=') {
            if items.iter().any(|i| i.is_object()) {
                return items
                    .iter()
                    .any(|i| i.get(k).is_some_and(|x| scalar_matches(x, want)));
            }
        }
    }
    scalar_matches(v, want)
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// The page `q` asks for, of sorted `items`: `limit` items after the
/// marker, or before it with `page_reverse` (the last `limit` without one).
fn paginate(items: Vec<Value>, q: &Query) -> NetResult<Vec<Value>> {
    let Some(limit) = q.limit else {
        return Ok(items);
    };
    let pos = match &q.marker {
        Some(m) => Some(
            items
                .iter()
                .position(|i| i.get("id").and_then(Value::as_str) == Some(m.as_str()))
                .ok_or_else(|| {
                    NetError::invalid("marker", format!("marker {m} could not be found"))
                })?,
        ),
        None => None,
    };
    let (lo, hi) = match (q.page_reverse, pos) {
        (false, None) => (0, limit.min(items.len())),
        (false, Some(p)) => (p + 1, (p + 1 + limit).min(items.len())),
        (true, None) => (items.len().saturating_sub(limit), items.len()),
        (true, Some(p)) => (p.saturating_sub(limit), p),
    };
    Ok(items[lo..hi].to_vec())
}

/// Neutron's `<plural>_links`: `next` unless a forward page came back short,
/// `previous` unless a reverse page came back short; each repeats the
/// request's parameters with the page's last (next) or first (previous) id
/// as the marker.
fn page_links(base: &str, q: &Query, page: &[Value], limit: usize) -> Vec<Value> {
    let id = |v: Option<&Value>| {
        v.and_then(|v| v.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let href = |marker: Option<String>, reverse: bool| {
        let mut params: Vec<(String, String)> = q
            .raw
            .iter()
            .filter(|(k, _)| k != "marker" && k != "page_reverse")
            .cloned()
            .collect();
        if let Some(m) = marker {
            params.push(("marker".into(), m));
        }
        if reverse {
            params.push(("page_reverse".into(), "True".into()));
        }
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        format!("{base}?{}", query.join("&"))
    };
    let short = page.len() < limit;
    let mut links = Vec::new();
    if !short || q.page_reverse {
        links.push(json!({"rel": "next", "href": href(id(page.last()), false)}));
    }
    if !short || !q.page_reverse {
        links.push(json!({"rel": "previous", "href": href(id(page.first()), true)}));
    }
    links
}

/// Percent-encodes a query component (form style, as Python's urlencode).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One page of a list, and the links to the next/previous pages.
pub struct Page {
    pub items: Vec<Value>,
    pub links: Vec<Value>,
}

/// Filters, sorts, pages and trims `items`. `base` is the collection URL for links.
/// Unknown filter attributes are ignored, as Neutron does without filter validation.
pub fn apply(mut items: Vec<Value>, q: &Query, base: &str, sortable: &[&str]) -> NetResult<Page> {
    items.retain(|item| {
        q.filters.iter().all(|(k, wants)| match item.get(k) {
            Some(v) => wants.iter().any(|w| matches(v, w)),
            None => true,
        })
    });
    for (k, _) in &q.sort {
        if !sortable.contains(&k.as_str()) {
            return Err(NetError::invalid(
                "sort_key",
                format!("'{k}' is not a sortable attribute"),
            ));
        }
    }
    let mut keys = q.sort.clone();
    if !keys.iter().any(|(k, _)| k == "id") {
        keys.push(("id".into(), keys.first().map(|k| k.1).unwrap_or(true)));
    }
    let order = |a: &Value, b: &Value| {
        for (k, asc) in &keys {
            let o = cmp_values(
                a.get(k).unwrap_or(&Value::Null),
                b.get(k).unwrap_or(&Value::Null),
            );
            let o = if *asc { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    };
    items.sort_by(order);
    let page = paginate(items, q)?;
    let links = match q.limit {
        Some(limit) => page_links(base, q, &page, limit),
        None => Vec::new(),
    };
    let mut page = page;
    if !q.fields.is_empty() {
        for item in &mut page {
            if let Value::Object(m) = item {
                m.retain(|k, _| q.fields.iter().any(|f| f == k));
            }
        }
    }
    Ok(Page { items: page, links })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<Value> {
        (0..5)
            .map(|i| {
                json!({"id": format!("id{i}"), "name": format!("n{}", 4 - i), "shared": i % 2 == 0,
                            "fixed_ips": [{"subnet_id": "s", "ip_address": format!("10.0.0.{i}")}]})
            })
            .collect()
    }

    #[test]
    fn filters_fields_sort_and_pages() {
        let q = Query::parse("shared=True&fields=id&fields=name").unwrap();
        let p = apply(items(), &q, "/n", &["id", "name"]).unwrap();
        assert_eq!(p.items.len(), 3);
        assert_eq!(p.items[0], json!({"id": "id0", "name": "n4"}));

        let q = Query::parse("fixed_ips=ip_address%3D10.0.0.3").unwrap();
        let p = apply(items(), &q, "/n", &["id"]).unwrap();
        assert_eq!(p.items.len(), 1);

        let q = Query::parse("sort_key=name&sort_dir=asc&limit=2").unwrap();
        let p = apply(items(), &q, "/n", &["id", "name"]).unwrap();
        assert_eq!(p.items[0]["name"], "n0");
        assert_eq!(p.links[0]["rel"], "next");
        let next = p.links[0]["href"].as_str().unwrap();
        assert!(next.contains("marker=id3"), "{next}");

        let q = Query::parse(next.split_once('?').unwrap().1).unwrap();
        let p = apply(items(), &q, "/n", &["id", "name"]).unwrap();
        assert_eq!(
            p.items
                .iter()
                .map(|i| i["name"].clone())
                .collect::<Vec<_>>(),
            vec![json!("n2"), json!("n3")]
        );

        // Walk forward to the end, then back to the start, by the links.
        let walk = |start: &str, rel: &str| {
            let mut seen = Vec::new();
            let mut q = Query::parse(start).unwrap();
            for _ in 0..10 {
                let p = apply(items(), &q, "/n", &["id", "name"]).unwrap();
                let ids: Vec<String> = p
                    .items
                    .iter()
                    .map(|i| i["id"].as_str().unwrap().to_string())
                    .collect();
                if rel == "previous" {
                    seen.splice(0..0, ids);
                } else {
                    seen.extend(ids);
                }
                match p.links.iter().find(|l| l["rel"] == rel) {
                    Some(l) => {
                        let h = l["href"].as_str().unwrap();
                        assert!(h.starts_with("/n?"), "{h}");
                        assert!(h.contains("shared=True"), "filters kept: {h}");
                        q = Query::parse(h.split_once('?').unwrap().1).unwrap();
                    }
                    None => return seen,
                }
            }
            panic!("no end to the {rel} links");
        };
        let all: Vec<String> = ["id0", "id2", "id4"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(walk("shared=True&limit=1", "next"), all);
        assert_eq!(
            walk("shared=True&limit=2&page_reverse=True", "previous"),
            all
        );

        assert!(Query::parse("sort_dir=up").is_err());
        assert!(Query::parse("limit=x").is_err());
        assert!(apply(
            items(),
            &Query::parse("sort_key=bogus").unwrap(),
            "/n",
            &["id"]
        )
        .is_err());
    }
}
