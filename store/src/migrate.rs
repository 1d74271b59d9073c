//! Schema migrations as files, one scheme for every backend: the files under
//! `migrations/<backend>/` are numbered, embedded at build time, applied in
//! order inside a transaction, and recorded in `schema_migrations`. At open a
//! database whose schema is newer than this binary knows is refused rather
//! than written with the wrong shape.

use crate::StoreError;

/// One migration file.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[Migration {
    version: 1,
    name: "0001_init.sql",
    sql: include_str!("../migrations/sqlite/0001_init.sql"),
}];

pub(crate) const POSTGRES: &[Migration] = &[Migration {
    version: 1,
    name: "0001_init.sql",
    sql: include_str!("../migrations/postgres/0001_init.sql"),
}];

/// The migrations still to apply to a database at `applied` (the versions
/// it records), or an error if it has one this binary does not know.
pub(crate) fn pending<'a>(
    all: &'a [Migration],
    applied: &[i64],
) -> Result<Vec<&'a Migration>, StoreError> {
    let known = all.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(v) = applied.iter().find(|v| **v > known) {
        return Err(StoreError::Migration(format!(
            "the database has schema version {v}, this weft knows up to {known}: \
             run a newer weft against it"
        )));
    }
    Ok(all
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_skips_applied_and_refuses_newer() {
        assert_eq!(pending(SQLITE, &[]).unwrap().len(), SQLITE.len());
        assert!(pending(SQLITE, &[1]).unwrap().is_empty());
        let err = pending(SQLITE, &[1, 99]).err().unwrap();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }

    #[test]
    fn versions_are_numbered_in_order_and_match_the_file_names() {
        for set in [SQLITE, POSTGRES] {
            for (i, m) in set.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1);
                assert!(m.name.starts_with(&format!("{:04}_", m.version)));
            }
        }
    }
}
