//! The store's contract, run against both backends: SQLite in a temp file and
//! PostgreSQL in a fresh database on the local server.

use std::sync::Arc;
use weft_store::testing::TestDatabase;
use weft_store::{Change, Model, Replica, Row, SqliteStore, Store, StoreError};

fn backends() -> Vec<(Arc<dyn Store>, Box<dyn std::any::Any>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("weft.sqlite")).unwrap();
    let db = TestDatabase::create().expect("PostgreSQL for the store tests");
    let pg = weft_store::PgStore::connect(&db.url).unwrap();
    vec![
        (Arc::new(sqlite), Box::new(dir)),
        (Arc::new(pg), Box::new(db)),
    ]
}

#[test]
fn commit_is_conditional_on_the_revision_read() {
    for (s, _keep) in backends() {
        let b = s.backend();
        assert_eq!(s.load("net").unwrap().revision, 0, "{b}");
        assert_eq!(
            s.commit("net", 0, &[Change::put("port", "p1", "{}")])
                .unwrap(),
            1,
            "{b}"
        );
        // A second writer that also read revision 0 loses, and writes nothing.
        let err = s
            .commit("net", 0, &[Change::put("port", "p2", "{}")])
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::Conflict {
                service: "net".into(),
                expected: 0,
                actual: 1
            },
            "{b}"
        );
        let l = s.load("net").unwrap();
        assert_eq!((l.revision, l.rows.len()), (1, 1), "{b}");
        // Services have revisions of their own.
        assert_eq!(
            s.commit("identity", 0, &[Change::put("user", "u", "{}")])
                .unwrap(),
            1,
            "{b}"
        );
        assert_eq!(
            s.commit("net", 1, &[Change::delete("port", "p1")]).unwrap(),
            2,
            "{b}"
        );
        assert!(s.load("net").unwrap().rows.is_empty(), "{b}");
        assert_eq!(s.load("identity").unwrap().rows.len(), 1, "{b}");
    }
}

#[test]
fn change_log_replays_commits_in_order() {
    for (s, _keep) in backends() {
        let b = s.backend();
        for i in 0..5u64 {
            s.commit(
                "net",
                i,
                &[Change::put(
                    "port",
                    format!("p{i}"),
                    format!("{{\"n\":{i}}}"),
                )],
            )
            .unwrap();
        }
        let log = s.changes_since("net", 2).unwrap();
        assert_eq!(
            log.iter().map(|c| c.revision).collect::<Vec<_>>(),
            vec![3, 4, 5],
            "{b}"
        );
        assert_eq!(
            log[0].changes,
            vec![Change::put("port", "p2", "{\"n\":2}")],
            "{b}"
        );
        assert!(s.changes_since("net", 5).unwrap().is_empty(), "{b}");
        // The log names records; a follower reads their bodies as of the
        // revision it catches up to: a record rewritten later shows its last
        // body, one deleted later shows as deleted.
        s.commit("net", 5, &[Change::put("port", "p3", "{\"n\":33}")])
            .unwrap();
        s.commit("net", 6, &[Change::delete("port", "p4")]).unwrap();
        let log = s.changes_since("net", 2).unwrap();
        assert_eq!(
            log[1].changes,
            vec![Change::put("port", "p3", "{\"n\":33}")],
            "{b}"
        );
        assert_eq!(log[2].changes, vec![Change::delete("port", "p4")], "{b}");
        assert_eq!(log[4].changes, vec![Change::delete("port", "p4")], "{b}");
    }
}

#[test]
fn import_only_into_a_service_that_never_committed() {
    for (s, _keep) in backends() {
        let b = s.backend();
        let rows = vec![Row {
            kind: "user".into(),
            id: "u1".into(),
            body: "{}".into(),
        }];
        assert!(s.import("identity", 41, &rows).unwrap(), "{b}");
        assert!(!s.import("identity", 7, &rows).unwrap(), "{b}");
        assert_eq!(s.load("identity").unwrap().revision, 41, "{b}");
        // The log has nothing before the import: a follower there reloads.
        assert!(
            matches!(
                s.changes_since("identity", 3),
                Err(StoreError::LogTruncated { .. })
            ),
            "{b}"
        );
        assert_eq!(s.commit("identity", 41, &[]).unwrap(), 42, "{b}");
    }
}

/// A toy model: a set of (kind, id) keys.
#[derive(Default)]
struct Keys {
    rev: u64,
    keys: std::collections::BTreeSet<String>,
}

thread_local! {
    /// Whole-state clones made on this thread (the writer's, in these tests).
    static CLONES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Clone for Keys {
    fn clone(&self) -> Self {
        CLONES.with(|c| c.set(c.get() + 1));
        Keys {
            rev: self.rev,
            keys: self.keys.clone(),
        }
    }
}

/// A write costs its changes, not a copy of the state: the writer reuses the
/// snapshot it retired at the previous write once no reader holds it, and
/// clones only when one still does.
#[test]
fn writes_do_not_clone_the_state_unless_a_reader_holds_it() {
    let s: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let r: Replica<Keys> = Replica::open("c", s).unwrap();
    let put = |i: usize| {
        r.write(|_: &Keys| Ok::<_, StoreError>(((), vec![Change::put("k", format!("k{i}"), "")])))
            .unwrap()
    };
    CLONES.with(|c| c.set(0));
    for i in 0..50 {
        put(i);
    }
    assert_eq!(
        CLONES.with(|c| c.get()),
        1,
        "only the first write has nothing retired"
    );
    assert_eq!(r.snapshot().keys.len(), 50);
    // A reader keeps a snapshot across two writes: its copy cannot be reused.
    let held = r.snapshot();
    put(50);
    put(51);
    assert_eq!(CLONES.with(|c| c.get()), 2);
    assert_eq!(held.keys.len(), 50, "a held snapshot never changes");
    drop(held);
    put(52);
    put(53);
    assert_eq!(CLONES.with(|c| c.get()), 2);
    assert_eq!(r.snapshot().keys.len(), 54);
    assert_eq!(r.revision(), 54);
}

impl Model for Keys {
    type Decoded = Vec<Change>;
    fn from_rows(revision: u64, rows: Vec<Row>) -> Result<Self, StoreError> {
        Ok(Keys {
            rev: revision,
            keys: rows.into_iter().map(|r| r.id).collect(),
        })
    }
    fn decode(changes: &[Change]) -> Result<Vec<Change>, StoreError> {
        Ok(changes.to_vec())
    }
    fn apply_decoded(&mut self, revision: u64, changes: &Vec<Change>) {
        for c in changes {
            match c {
                Change::Put { id, .. } => self.keys.insert(id.clone()),
                Change::Delete { id, .. } => self.keys.remove(id),
            };
        }
        self.rev = revision;
    }
    fn revision(&self) -> u64 {
        self.rev
    }
}

/// Two replicas of one service on one store: each writes on what it read,
/// a stale writer catches up and reruns, so a "take the last free slot"
/// write is won by exactly one of them.
#[test]
fn two_replicas_never_lose_an_update() {
    for (s, _keep) in backends() {
        let b = s.backend();
        let a: Arc<Replica<Keys>> = Arc::new(Replica::open("slots", s.clone()).unwrap());
        let c: Arc<Replica<Keys>> = Arc::new(Replica::open("slots", s.clone()).unwrap());
        let take = |r: &Replica<Keys>, who: &str| -> Result<(), StoreError> {
            r.write(|st: &Keys| {
                if st.keys.contains("last") {
                    return Err(StoreError::Backend("taken".into()));
                }
                Ok(((), vec![Change::put("slot", "last", who)]))
            })
        };
        take(&a, "a").unwrap();
        // c still holds revision 0; its write conflicts, catches up, reruns, sees it taken.
        assert_eq!(c.revision(), 0, "{b}");
        let err = take(&c, "c").unwrap_err();
        assert_eq!(err, StoreError::Backend("taken".into()), "{b}");
        assert_eq!(c.revision(), 1, "{b}");
        // Writes from both interleave without loss.
        for i in 0..20 {
            let r = if i % 2 == 0 { &a } else { &c };
            r.write(|_: &Keys| {
                Ok::<_, StoreError>(((), vec![Change::put("k", format!("k{i}"), "")]))
            })
            .unwrap();
        }
        a.catch_up().unwrap();
        c.catch_up().unwrap();
        assert_eq!(a.snapshot().keys, c.snapshot().keys, "{b}");
        assert_eq!(a.snapshot().keys.len(), 21, "{b}");
        assert_eq!(a.revision(), 21, "{b}");
    }
}

/// The follower thread applies other replicas' commits through
/// LISTEN/NOTIFY well within 100 ms.
#[test]
fn follower_sees_another_replicas_write_quickly() {
    let db = TestDatabase::create().unwrap();
    let s: Arc<dyn Store> = Arc::new(weft_store::PgStore::connect(&db.url).unwrap());
    let writer: Arc<Replica<Keys>> = Arc::new(Replica::open("f", s.clone()).unwrap());
    let reader: Arc<Replica<Keys>> = Arc::new(Replica::open("f", s.clone()).unwrap());
    let follower: Arc<dyn weft_store::Follow> = reader.clone();
    weft_store::follow(s.clone(), vec![follower]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut lags = Vec::new();
    for i in 0..20u64 {
        let t = std::time::Instant::now();
        writer
            .write(|_: &Keys| {
                Ok::<_, StoreError>(((), vec![Change::put("k", format!("k{i}"), "")]))
            })
            .unwrap();
        while reader.revision() < i + 1 {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(2),
                "follower stuck"
            );
            std::thread::yield_now();
        }
        lags.push(t.elapsed());
    }
    lags.sort();
    assert!(
        lags[lags.len() / 2] < std::time::Duration::from_millis(100),
        "{lags:?}"
    );
}

/// Two processes on one SQLite file (a CLI beside a running server): the
/// follower's poll carries the other's commits over; the file is owner-only.
#[test]
fn sqlite_followers_poll_and_the_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.sqlite");
    let server: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut l = server.listener().unwrap().expect("SQLite followers poll");
    assert!(l
        .wait(std::time::Duration::from_millis(5))
        .unwrap()
        .is_empty());
    let r: Arc<Replica<Keys>> = Arc::new(Replica::open("n", server.clone()).unwrap());
    let follower: Arc<dyn weft_store::Follow> = r.clone();
    weft_store::follow(server.clone(), vec![follower]).unwrap();
    let cli = SqliteStore::open(&path).unwrap();
    cli.commit("n", 0, &[Change::put("a", "1", "x")]).unwrap();
    let t = std::time::Instant::now();
    while r.revision() < 1 {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "poll never caught up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(r.snapshot().keys.contains("1"));
}

#[test]
fn open_understands_database_urls() {
    let dir = tempfile::tempdir().unwrap();
    let s = weft_store::open(None, dir.path()).unwrap();
    assert_eq!(s.backend(), "sqlite");
    assert!(dir.path().join("weft.sqlite").exists());
    let p = dir.path().join("other.sqlite");
    let s = weft_store::open(Some(&format!("sqlite:{}", p.display())), dir.path()).unwrap();
    assert_eq!(s.backend(), "sqlite");
    assert!(p.exists());
    assert!(matches!(
        weft_store::open(Some("mysql://x@y/z"), dir.path()),
        Err(StoreError::Url(_))
    ));
    let e = weft_store::open(Some("postgresql://nobody@127.0.0.1:1/x"), dir.path())
        .err()
        .unwrap();
    assert!(e.to_string().contains("connecting to"), "{e}");
    assert_eq!(
        weft_store::redact("postgresql://u:secret@h/db"),
        "postgresql://u:***@h/db"
    );
}
