//! The agent's sync rounds and the switch reloads they cause run in spans:
//! `sync_round` (host, revision) with `switch_reload` inside it, so an
//! operator can follow one round's log lines, the switch's included.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::field::Field;
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;
use weft_agent::{Agent, AgentError, Ctrl, HostBase, WeftSwitch};
use weft_proto::HostState;

/// A span as the layer saw it open: name, its parent's name, its fields.
#[derive(Clone, Debug)]
struct Seen {
    name: String,
    parent: Option<String>,
    fields: String,
}

#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Seen>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.name().to_string());
        let mut fields = String::new();
        attrs.record(&mut |f: &Field, v: &dyn Debug| {
            fields.push_str(&format!("{}={v:?} ", f.name()))
        });
        self.0.lock().unwrap().push(Seen {
            name: attrs.metadata().name().to_string(),
            parent,
            fields,
        });
    }
}

/// A ctrl the test never calls through: it drives `step` itself.
struct NoCtrl;

impl Ctrl for NoCtrl {
    async fn register(&self) -> Result<(), AgentError> {
        Ok(())
    }
    async fn state(&self, _: u64, _: Duration) -> Result<HostState, AgentError> {
        Err(AgentError::Local("not used".into()))
    }
    async fn report(&self, _: &[(String, String)]) -> Result<(), AgentError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_sync_round_and_its_switch_reload_run_in_spans() {
    let spans = Spans::default();
    let _log = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let base = HostBase::parse("[switch]\nworkers = 1\n").unwrap();
    let sw = WeftSwitch::start(&base.config).unwrap();
    let mut agent = Agent::new(NoCtrl, sw, base);
    let st = HostState {
        host: "h1".into(),
        revision: 7,
        networks: vec![],
        ports: vec![],
        security_groups: vec![],
        tunnel_peers: vec![],
    };
    agent.step(&st).await;

    let seen = spans.0.lock().unwrap().clone();
    let round = seen
        .iter()
        .find(|s| s.name == "sync_round")
        .unwrap_or_else(|| panic!("no sync_round span in {seen:?}"));
    assert!(
        round.fields.contains("host=h1") && round.fields.contains("revision=7"),
        "{round:?}"
    );
    let reload = seen
        .iter()
        .find(|s| s.name == "switch_reload")
        .unwrap_or_else(|| panic!("no switch_reload span in {seen:?}"));
    assert_eq!(reload.parent.as_deref(), Some("sync_round"), "{reload:?}");
    agent.dp.handle.shutdown();
}
