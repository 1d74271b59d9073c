//! The HTTP side of the metadata service, as pure functions: request bytes -> [`Request`],
//! (request, port data) -> [`Response`] -> bytes. One request per connection (the response
//! says `Connection: close`), which is what cloud-init, curl and wget do here.

use super::render;
use super::PortMetadata;

/// Longest request head accepted (request line + headers); longer: 400.
pub const MAX_REQUEST: usize = 8192;

/// The part of a request the service reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET` or `HEAD` (anything else is answered 405).
    pub method: String,
    /// The path, without query string.
    pub path: String,
}

/// Why a request head is not one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Longer than [`MAX_REQUEST`] without the blank line that ends the head.
    TooLong,
    /// The request line is not `METHOD PATH HTTP/x`.
    Malformed,
}

/// Parses a request head: Ok(None) while the blank line ending it has not arrived yet.
pub fn parse_request(buf: &[u8]) -> Result<Option<Request>, RequestError> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n"));
    let Some(end) = end else {
        return if buf.len() > MAX_REQUEST {
            Err(RequestError::TooLong)
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| RequestError::Malformed)?;
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed);
    };
    if !version.starts_with("HTTP/") || !target.starts_with('/') {
        return Err(RequestError::Malformed);
    }
    let path = target.split(['?', '#']).next().unwrap_or("/");
    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
    }))
}

/// An HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// Body (sent for GET, left out for HEAD; Content-Length is the same for both).
    pub body: Vec<u8>,
}

impl Response {
    fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=UTF-8",
            body: body.into(),
        }
    }

    fn json(body: Vec<u8>) -> Response {
        Response {
            status: 200,
            content_type: "application/json",
            body,
        }
    }

    /// 404, as Nova words it.
    pub fn not_found() -> Response {
        Response::text(404, "404 Not Found\n\nThe resource could not be found.\n")
    }

    /// The bytes on the wire (`head_only`: a HEAD request's answer, no body).
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Error",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The answer to a request head that could not be read.
pub fn bad_request() -> Response {
    Response::text(400, "400 Bad Request\n")
}

/// The OpenStack metadata versions Nova lists at `/openstack`; every one serves the same
/// documents as `latest` here.
pub const OPENSTACK_VERSIONS: &[&str] = &[
    "2012-08-10",
    "2013-04-04",
    "2013-10-17",
    "2015-10-15",
    "2016-06-30",
    "2016-10-06",
    "2017-02-22",
    "2018-08-27",
    "2020-10-14",
    "latest",
];

/// The EC2 versions listed at `/`; each serves what `latest` does.
pub const EC2_VERSIONS: &[&str] = &["1.0", "2007-01-19", "2009-04-04", "latest"];

/// Answers one request for the port `m`. The port is the caller's identity: nothing in the
/// request selects another instance.
pub fn respond(req: &Request, m: &PortMetadata) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::text(405, "405 Method Not Allowed\n");
    }
    let Some(inst) = m.instance.as_deref() else {
        return Response::not_found();
    };
    let path = req.path.trim_end_matches('/');
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    match parts.as_slice() {
        [] | [""] => Response::text(
            200,
            lines(EC2_VERSIONS.iter().copied().chain(["openstack"])),
        ),
        ["openstack"] => Response::text(200, lines(OPENSTACK_VERSIONS.iter().copied())),
        ["openstack", v, rest @ ..] if OPENSTACK_VERSIONS.contains(v) => openstack(rest, m, inst),
        [v, rest @ ..] if EC2_VERSIONS.contains(v) => ec2(rest, m, inst),
        _ => Response::not_found(),
    }
}

fn openstack(rest: &[&str], m: &PortMetadata, inst: &super::InstanceMetadata) -> Response {
    match rest {
        [] => {
            let mut docs = vec!["meta_data.json", "network_data.json"];
            if inst.user_data.is_some() {
                docs.push("user_data");
            }
            docs.extend(["vendor_data.json", "vendor_data2.json"]);
            Response::text(200, lines(docs))
        }
        ["meta_data.json"] => Response::json(render::meta_data(inst)),
        ["network_data.json"] => Response::json(render::network_data(m)),
        ["vendor_data.json"] | ["vendor_data2.json"] => Response::json(b"{}".to_vec()),
        ["user_data"] => match inst.user_data_bytes() {
            Some(u) => Response {
                status: 200,
                content_type: "text/plain; charset=UTF-8",
                body: u,
            },
            None => Response::not_found(),
        },
        _ => Response::not_found(),
    }
}

fn ec2(rest: &[&str], m: &PortMetadata, inst: &super::InstanceMetadata) -> Response {
    let hostname = render::hostname(inst);
    match rest {
        [] => {
            let mut docs = vec!["meta-data/"];
            if inst.user_data.is_some() {
                docs.push("user-data");
            }
            Response::text(200, lines(docs))
        }
        ["user-data"] => match inst.user_data_bytes() {
            Some(u) => Response::text(200, u),
            None => Response::not_found(),
        },
        ["meta-data"] => {
            let mut items = vec![
                "hostname",
                "instance-id",
                "local-hostname",
                "local-ipv4",
                "placement/",
            ];
            if !inst.public_keys.is_empty() {
                items.push("public-keys/");
            }
            Response::text(200, lines(items))
        }
        ["meta-data", "instance-id"] => Response::text(200, inst.uuid.clone()),
        ["meta-data", "hostname"] | ["meta-data", "local-hostname"] => {
            Response::text(200, hostname)
        }
        ["meta-data", "local-ipv4"] => Response::text(200, m.local_ipv4.to_string()),
        ["meta-data", "placement"] => Response::text(200, "availability-zone"),
        ["meta-data", "placement", "availability-zone"] => {
            Response::text(200, render::availability_zone(inst))
        }
        ["meta-data", "public-keys"] if !inst.public_keys.is_empty() => Response::text(
            200,
            lines(
                inst.public_keys
                    .keys()
                    .enumerate()
                    .map(|(i, name)| format!("{i}={name}")),
            ),
        ),
        ["meta-data", "public-keys", i, rest @ ..] => {
            let Some(key) = i
                .parse::<usize>()
                .ok()
                .and_then(|i| inst.public_keys.values().nth(i))
            else {
                return Response::not_found();
            };
            match rest {
                [] => Response::text(200, "openssh-key"),
                ["openssh-key"] => Response::text(200, key.clone()),
                _ => Response::not_found(),
            }
        }
        _ => Response::not_found(),
    }
}

/// Items one per line, as Nova's listings are (no trailing newline).
fn lines<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    items
        .into_iter()
        .map(|s| s.as_ref().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
