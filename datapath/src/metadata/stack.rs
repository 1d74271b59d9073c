//! One small TCP/IP stack per VM port that talks to 169.254.169.254: a smoltcp `Interface`
//! (MAC [`SERVER_MAC`], address 169.254.169.254) with a few TCP sockets listening on port 80,
//! fed only with the frames the pipeline marked [`crate::Verdict::Metadata`] on that port, and
//! polled with the switch's clock. What it sends goes back out of the same port.
//!
//! The interface's prefix is /0, not /32: smoltcp answers ARP only for its exact address, but
//! it learns a neighbour (and sends to it directly) only inside its prefix, and the guest's
//! address is whatever the port holds. So the stack ARPs for the guest it talks to; the
//! guest's reply, aimed at 169.254.169.254, comes back here through the same pipeline stage.

use super::http::{self, Response};
use super::PortMetadata;
use crate::dhcp::SERVER_MAC;
use crate::verdict::PortNo;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Checksum, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, IpListenEndpoint};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// TCP connections a port may hold open at once (cloud-init asks one thing at a time).
const SOCKETS: usize = 4;
/// Receive buffer per connection: a request head ([`http::MAX_REQUEST`]) fits.
const RX_BUF: usize = http::MAX_REQUEST + 1024;
/// Send buffer per connection; longer answers (user data) are fed in as it drains.
const TX_BUF: usize = 16 * 1024;
/// A port's stack with no connection for this long is dropped (rebuilt on the next frame).
const IDLE_NS: u64 = 120 * 1_000_000_000;
/// Rounds of (poll, serve) per frame: enough to emit an answer written in response to it.
const ROUNDS: usize = 4;

/// What the metadata service did, summed over the switch's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetadataStats {
    /// HTTP requests answered (any status).
    pub requests: u64,
    /// Of those, answered 404.
    pub not_found: u64,
    /// Frames the stacks sent.
    pub frames_out: u64,
}

/// The switch's metadata stacks, one per port in use, behind one lock (frames to
/// 169.254.169.254 are rare: a guest's boot, cloud-init's few requests).
#[derive(Default)]
pub struct MetadataServer {
    stacks: Mutex<HashMap<PortNo, PortStack>>,
    requests: AtomicU64,
    not_found: AtomicU64,
    frames_out: AtomicU64,
}

impl MetadataServer {
    /// Feeds one frame that came in on `port` to the port's stack at `now_ns`, serves what
    /// it completes for `m`, and returns the frames to send back out of `port`.
    pub fn handle(
        &self,
        port: PortNo,
        m: &PortMetadata,
        frame: &[u8],
        now_ns: u64,
    ) -> Vec<Vec<u8>> {
        let mut stacks = self.stacks.lock().unwrap_or_else(|e| e.into_inner());
        stacks.retain(|_, s| now_ns.saturating_sub(s.last_used) < IDLE_NS || s.busy());
        let stack = stacks
            .entry(port)
            .or_insert_with(|| PortStack::new(now_ns, m.mac));
        if stack.guest_mac != m.mac {
            // The port number now belongs to another port: start afresh.
            *stack = PortStack::new(now_ns, m.mac);
        }
        stack.last_used = now_ns;
        let mut f = frame.to_vec();
        if f.len() >= 6 && f[0] & 1 == 0 {
            // Unicast to 169.254.169.254 through whatever next hop the guest chose (its
            // gateway's MAC, say): the stack takes it as its own.
            f[..6].copy_from_slice(&SERVER_MAC.0);
        }
        stack.dev.rx.push_back(f);
        let served = stack.run(m, now_ns);
        self.requests.fetch_add(served.requests, Ordering::Relaxed);
        self.not_found
            .fetch_add(served.not_found, Ordering::Relaxed);
        let out: Vec<Vec<u8>> = stack.dev.tx.drain(..).collect();
        self.frames_out
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// Drops the stacks of ports for which `keep` is false (gone, or no longer served).
    pub fn retain(&self, keep: impl Fn(PortNo) -> bool) {
        let mut stacks = self.stacks.lock().unwrap_or_else(|e| e.into_inner());
        stacks.retain(|p, _| keep(*p));
    }

    /// Number of ports with a live stack.
    pub fn stacks(&self) -> usize {
        self.stacks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Counters.
    pub fn stats(&self) -> MetadataStats {
        MetadataStats {
            requests: self.requests.load(Ordering::Relaxed),
            not_found: self.not_found.load(Ordering::Relaxed),
            frames_out: self.frames_out.load(Ordering::Relaxed),
        }
    }
}

/// Frames in and out of one stack: the device smoltcp polls.
struct Queue {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for Queue {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let f = self.rx.pop_front()?;
        Some((Rx(f), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        // A guest's kernel hands the tap TCP segments with the checksum left to the
        // offload (CHECKSUM_PARTIAL): not verifiable here, and the port vouched for the
        // sender already. Our own frames get full checksums.
        c.checksum.ipv4 = Checksum::Tx;
        c.checksum.tcp = Checksum::Tx;
        c.checksum.icmpv4 = Checksum::Tx;
        c
    }
}

/// One HTTP exchange on a socket: the request read so far, then the answer being sent.
#[derive(Default)]
struct Conn {
    request: Vec<u8>,
    answer: Option<Vec<u8>>,
    sent: usize,
}

struct PortStack {
    iface: Interface,
    sockets: SocketSet<'static>,
    handles: Vec<(SocketHandle, Conn)>,
    dev: Queue,
    guest_mac: Option<crate::MacAddr>,
    last_used: u64,
}

#[derive(Default)]
struct Served {
    requests: u64,
    not_found: u64,
}

fn instant(now_ns: u64) -> Instant {
    Instant::from_micros(i64::try_from(now_ns / 1000).unwrap_or(i64::MAX))
}

fn listening() -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; RX_BUF]),
        tcp::SocketBuffer::new(vec![0; TX_BUF]),
    );
    // Answer at once: the stack is polled only when the guest sends, so a delayed ACK or
    // a Nagle-held segment would wait for the guest's next frame.
    s.set_ack_delay(None);
    s.set_nagle_enabled(false);
    // Port 80 on 169.254.169.254 (the only address this stack has).
    let _ = s.listen(IpListenEndpoint::from(80));
    s
}

impl PortStack {
    fn new(now_ns: u64, guest_mac: Option<crate::MacAddr>) -> PortStack {
        let mut dev = Queue {
            rx: VecDeque::new(),
            tx: Vec::new(),
        };
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(SERVER_MAC.0)));
        cfg.random_seed = now_ns;
        let mut iface = Interface::new(cfg, &mut dev, instant(now_ns));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(super::METADATA_IP.into(), 0));
        });
        let mut sockets = SocketSet::new(Vec::new());
        let handles = (0..SOCKETS)
            .map(|_| (sockets.add(listening()), Conn::default()))
            .collect();
        PortStack {
            iface,
            sockets,
            handles,
            dev,
            guest_mac,
            last_used: now_ns,
        }
    }

    /// Whether a connection is open (the stack must not be dropped for idleness).
    fn busy(&mut self) -> bool {
        let sockets = &mut self.sockets;
        self.handles
            .iter()
            .any(|(h, _)| sockets.get_mut::<tcp::Socket>(*h).state() != tcp::State::Listen)
    }

    /// Polls the interface and serves the sockets until nothing more happens.
    fn run(&mut self, m: &PortMetadata, now_ns: u64) -> Served {
        let mut served = Served::default();
        let now = instant(now_ns);
        for _ in 0..ROUNDS {
            self.iface.poll(now, &mut self.dev, &mut self.sockets);
            if !self.serve(m, &mut served) {
                break;
            }
        }
        served
    }

    /// Reads requests, writes answers, recycles finished sockets; true when it queued
    /// something for the interface to send.
    fn serve(&mut self, m: &PortMetadata, served: &mut Served) -> bool {
        let mut queued = false;
        for (h, conn) in self.handles.iter_mut() {
            let s = self.sockets.get_mut::<tcp::Socket>(*h);
            match s.state() {
                tcp::State::Closed | tcp::State::TimeWait => {
                    // Done: a fresh listener. TIME_WAIT is skipped on purpose: on a link
                    // that is one port long there is no old duplicate to guard against.
                    self.sockets.remove(*h);
                    *h = self.sockets.add(listening());
                    *conn = Conn::default();
                    continue;
                }
                tcp::State::Listen | tcp::State::SynReceived => continue,
                _ => {}
            }
            if conn.answer.is_none() && s.may_recv() {
                let mut buf = [0u8; 2048];
                while let Ok(n) = s.recv_slice(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    conn.request.extend_from_slice(&buf[..n]);
                }
                let answer = match http::parse_request(&conn.request) {
                    Ok(None) => None,
                    Ok(Some(req)) => {
                        let r = http::respond(&req, m);
                        Some(r.to_bytes(req.method == "HEAD")).map(|b| (b, r.status))
                    }
                    Err(_) => Some((http::bad_request().to_bytes(false), 400)),
                };
                if let Some((bytes, status)) = answer {
                    served.requests += 1;
                    if status == Response::not_found().status {
                        served.not_found += 1;
                    }
                    conn.answer = Some(bytes);
                }
            }
            if let Some(a) = &conn.answer {
                if conn.sent < a.len() && s.can_send() {
                    if let Ok(n) = s.send_slice(&a[conn.sent..]) {
                        conn.sent += n;
                        queued |= n > 0;
                    }
                }
                if conn.sent == a.len() && s.may_send() {
                    s.close();
                    queued = true;
                }
            }
        }
        queued
    }
}
