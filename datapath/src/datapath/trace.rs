//! `weft trace`: what the pipeline would do with one frame, stage by stage, read from the
//! running snapshot without learning or counting (the packet path is not involved).

use super::Datapath;
use crate::describe::{self, DescribeError};
use crate::frame::FrameView;
use crate::pipeline::{self, FlowKey, Fwd, Recorder, TraceStep};
use crate::verdict::{DropReason, PortNo, Stage};

impl Datapath {
    /// What the pipeline would do with `frame` on `in_port`, stage by stage (no learning, no
    /// counting). The last step gives the outputs or the drop reason.
    pub fn trace(&self, in_port: PortNo, frame: &[u8], now_ns: u64) -> Vec<TraceStep> {
        let snap = self.snapshot.load();
        let mut rec = Recorder(Vec::new());
        let view = match FrameView::parse(frame) {
            Ok(v) => v,
            Err(e) => {
                let r = DropReason::from(e);
                rec.0.push(TraceStep {
                    stage: Stage::Parse,
                    decision: format!("{} frame ({} bytes): drop ({r})", r, frame.len()),
                });
                return rec.0;
            }
        };
        rec.0.push(TraceStep {
            stage: Stage::Parse,
            decision: describe::summarize(&view),
        });
        let key = FlowKey::from_view(in_port, &view);
        let d = pipeline::decide(&snap, &self.macs, &key, now_ns, false, &mut rec);
        let mut steps = rec.0;
        let mut outs = Vec::new();
        let mut drop = d.drop;
        if drop.is_none() {
            pipeline::expand(&snap, in_port, d.fwd, &mut outs);
            if d.firewall {
                let ct = self.conntrack();
                drop = crate::pipeline::firewall_trace::trace(
                    &snap, &ct, in_port, frame, &view, now_ns, &mut outs, &mut steps,
                );
            }
        }
        let last = match drop {
            Some(r) => format!("Datapath actions: drop ({r})"),
            None if d.fwd == Fwd::Dhcp => {
                "Datapath actions: answered by the switch's DHCP server on the ingress port".into()
            }
            None if d.fwd == Fwd::Metadata => {
                "Datapath actions: answered by the switch's metadata service (169.254.169.254) on the ingress port".into()
            }
            None => {
                let list: Vec<String> = outs
                    .iter()
                    .map(|o| {
                        let name = snap
                            .port(o.port)
                            .map(|p| p.name.clone())
                            .unwrap_or_else(|| o.port.to_string());
                        format!("{name}({})", o.edit)
                    })
                    .collect();
                format!("Datapath actions: output to {}", list.join(", "))
            }
        };
        steps.push(TraceStep {
            stage: Stage::Uplink,
            decision: last,
        });
        steps
    }

    /// Parses a frame description (see [`describe::parse_description`]) and traces it.
    pub fn trace_description(
        &self,
        desc: &str,
        now_ns: u64,
    ) -> Result<Vec<TraceStep>, DescribeError> {
        let snap = self.snapshot.load();
        let (port, frame) = describe::parse_description(desc, &snap)?;
        Ok(self.trace(port, &frame, now_ns))
    }
}
