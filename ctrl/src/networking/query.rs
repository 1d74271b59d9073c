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
        for (k, v) in parse_pairs(raw) {
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
    let mut links = Vec::new();
    let start = match &q.marker {
        Some(m) => {
            let pos = items
                .iter()
                .position(|i| i.get("id").and_then(Value::as_str) == Some(m.as_str()))
                .ok_or_else(|| {
                    NetError::invalid("marker", format!("marker {m} could not be found"))
                })?;
            if q.page_reverse {
                // Previous page: the `limit` items before the marker.
                let lo = q.limit.map(|l| pos.saturating_sub(l)).unwrap_or(0);
                items = items[lo..pos].to_vec();
                0
            } else {
                pos + 1
            }
        }
        None => 0,
    };
    let mut page: Vec<Value> = items.iter().skip(start).cloned().collect();
    if let Some(limit) = q.limit {
        let more = page.len() > limit;
        page.truncate(limit);
        let mut extra = String::new();
        for (k, asc) in &q.sort {
            extra.push_str(&format!(
                "&sort_key={k}&sort_dir={}",
                if *asc { "asc" } else { "desc" }
            ));
        }
        if more {
            if let Some(last) = page
                .last()
                .and_then(|v| v.get("id"))
                .and_then(Value::as_str)
            {
                links.push(json!({"rel": "next", "href": format!("{base}?limit={limit}&marker={last}{extra}")}));
            }
        }
        if q.marker.is_some() {
            if let Some(first) = page
                .first()
                .and_then(|v| v.get("id"))
                .and_then(Value::as_str)
            {
                links.push(json!({"rel": "previous",
                    "href": format!("{base}?limit={limit}&marker={first}&page_reverse=True{extra}")}));
            }
        }
    }
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
        assert_eq!(p.links.len(), 1);
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
