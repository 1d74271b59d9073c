//! In-process token issue/validate: the service core without HTTP, plus the
//! HTTP router in-process (no sockets). Password hashing is measured apart.

use criterion::{criterion_group, criterion_main, Criterion};
use std::sync::Arc;
use weft_identity::service::{AuthRequest, PasswordAuth, ScopeRequest, UserRef};
use weft_identity::{Identity, IdentityConfig};

struct Fixture {
    _dir: tempfile::TempDir,
    id: Arc<Identity>,
    project: String,
    token: String,
}

fn fixture(bcrypt_cost: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = weft_store::SqliteStore::open(&dir.path().join("weft.sqlite")).unwrap();
    let mut id = Identity::open(
        IdentityConfig::new(dir.path(), "http://bench"),
        std::sync::Arc::new(store),
    )
    .unwrap();
    id.set_bcrypt_cost(bcrypt_cost);
    let rep = id.bootstrap(Some("pw")).unwrap();
    id.register_service("identity", "keystone", &id.v3_url())
        .unwrap();
    let id = Arc::new(id);
    let req = password_req(&rep.admin_project_id);
    let (token, _) = id.issue_token(&req).unwrap();
    Fixture {
        _dir: dir,
        id,
        project: rep.admin_project_id,
        token,
    }
}

fn password_req(project: &str) -> AuthRequest {
    AuthRequest {
        password: Some(PasswordAuth {
            user: UserRef {
                name: Some("admin".into()),
                domain_id: Some("default".into()),
                ..Default::default()
            },
            password: "pw".into(),
        }),
        scope: ScopeRequest::Project {
            id: Some(project.into()),
            name: None,
            domain_id: None,
            domain_name: None,
        },
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let f = fixture(weft_identity::service::BCRYPT_COST);
    c.bench_function("validate_token (project scope, 3 roles)", |b| {
        b.iter(|| f.id.validate_token(&f.token).unwrap())
    });
    let rescope = AuthRequest {
        token: Some(f.token.clone()),
        scope: ScopeRequest::Project {
            id: Some(f.project.clone()),
            name: None,
            domain_id: None,
            domain_name: None,
        },
        ..Default::default()
    };
    c.bench_function("issue_token (token method, no password hash)", |b| {
        b.iter(|| f.id.issue_token(&rescope).unwrap())
    });
    let pw = password_req(&f.project);
    let mut g = c.benchmark_group("password");
    g.sample_size(10);
    g.bench_function("issue_token (password, bcrypt cost 10)", |b| {
        b.iter(|| f.id.issue_token(&pw).unwrap())
    });
    g.finish();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = weft_identity::router(f.id.clone());
    c.bench_function("GET /v3/auth/tokens via router (in-process)", |b| {
        b.iter(|| {
            use tower::ServiceExt;
            let req = axum::http::Request::get("/v3/auth/tokens")
                .header("X-Auth-Token", &f.token)
                .header("X-Subject-Token", &f.token)
                .body(axum::body::Body::empty())
                .unwrap();
            let resp = rt.block_on(app.clone().oneshot(req)).unwrap();
            assert_eq!(resp.status(), 200);
            rt.block_on(http_body_util::BodyExt::collect(resp.into_body()))
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
