//! Servers as Nova renders them, per microversion and per caller (the
//! `OS-EXT-SRV-ATTR:*` attributes are an admin's).

use super::record::Server;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha224};

fn links(base: &str, kind: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base}/v2.1/{kind}/{id}")},
        {"rel": "bookmark", "href": format!("{base}/{kind}/{id}")},
    ])
}

/// `{"id", "name", "links"}` of `GET /servers`.
pub fn summary(s: &Server, base: &str) -> Value {
    json!({"id": s.id, "name": s.name, "links": links(base, "servers", &s.id)})
}

/// Nova's `hostId`: sha224 of project id + host, so a project can tell its
/// servers share a host without learning host names.
fn host_id(s: &Server) -> String {
    match &s.host {
        Some(h) => hex::encode(Sha224::digest(format!("{}{h}", s.project_id))),
        None => String::new(),
    }
}

fn addresses(s: &Server) -> Value {
    let mut m = Map::new();
    for (net, addrs) in &s.addresses {
        let list: Vec<Value> = addrs
            .iter()
            .map(|(addr, version, mac)| {
                json!({"addr": addr, "version": version, "OS-EXT-IPS:type": "fixed",
                       "OS-EXT-IPS-MAC:mac_addr": mac})
            })
            .collect();
        m.insert(net.clone(), Value::Array(list));
    }
    Value::Object(m)
}

/// The detailed view (show, create's server at `GET`, `GET /servers/detail`).
pub fn detail(s: &Server, base: &str, mv: (u32, u32), admin: bool) -> Value {
    let mut v = json!({
        "id": s.id,
        "name": s.name,
        "status": s.status(),
        "tenant_id": s.project_id,
        "user_id": s.user_id,
        "metadata": s.metadata,
        "hostId": host_id(s),
        "image": {"id": s.image_ref, "links": [
            {"rel": "bookmark", "href": format!("{base}/images/{}", s.image_ref)}]},
        "created": s.created,
        "updated": s.updated,
        "addresses": addresses(s),
        "accessIPv4": "",
        "accessIPv6": "",
        "links": links(base, "servers", &s.id),
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": s.availability_zone.clone().unwrap_or_default(),
        "config_drive": "",
        "key_name": s.key_name,
        "OS-SRV-USG:launched_at": s.launched_at,
        "OS-SRV-USG:terminated_at": null,
        "security_groups": s.security_groups.iter().map(|g| json!({"name": g})).collect::<Vec<_>>(),
        "OS-EXT-STS:task_state": s.task_state,
        "OS-EXT-STS:vm_state": s.vm_state,
        "OS-EXT-STS:power_state": s.power_state,
        "os-extended-volumes:volumes_attached": [],
    });
    if matches!(s.status(), "BUILD" | "ACTIVE") {
        v["progress"] = json!(0);
    }
    v["flavor"] = if mv >= (2, 47) {
        json!({"vcpus": s.flavor.vcpus, "ram": s.flavor.ram, "disk": s.flavor.disk,
               "ephemeral": s.flavor.ephemeral, "swap": s.flavor.swap,
               "original_name": s.flavor.name, "extra_specs": s.flavor.extra_specs})
    } else {
        json!({"id": s.flavor.id, "links": [
            {"rel": "bookmark", "href": format!("{base}/flavors/{}", s.flavor.id)}]})
    };
    if admin {
        v["OS-EXT-SRV-ATTR:host"] = json!(s.host);
        v["OS-EXT-SRV-ATTR:hypervisor_hostname"] = json!(s.host);
        v["OS-EXT-SRV-ATTR:instance_name"] = json!(s.instance_name);
        if mv >= (2, 3) {
            v["OS-EXT-SRV-ATTR:reservation_id"] = json!(s.reservation_id);
            v["OS-EXT-SRV-ATTR:launch_index"] = json!(s.launch_index);
            v["OS-EXT-SRV-ATTR:hostname"] = json!(s.hostname);
            v["OS-EXT-SRV-ATTR:kernel_id"] = json!("");
            v["OS-EXT-SRV-ATTR:ramdisk_id"] = json!("");
            v["OS-EXT-SRV-ATTR:root_device_name"] = json!("/dev/vda");
            v["OS-EXT-SRV-ATTR:user_data"] = json!(s.user_data);
        }
        if mv >= (2, 16) {
            v["host_status"] = json!(if s.host.is_some() { "UP" } else { "" });
        }
    }
    if mv >= (2, 9) {
        v["locked"] = json!(s.locked);
    }
    if mv >= (2, 19) {
        v["description"] = json!(s.description);
    }
    if mv >= (2, 26) {
        v["tags"] = json!(s.tags);
    }
    if mv >= (2, 63) {
        v["trusted_image_certificates"] = Value::Null;
    }
    if mv >= (2, 71) {
        v["server_groups"] = json!(s.server_group.iter().collect::<Vec<_>>());
    }
    if mv >= (2, 73) {
        v["locked_reason"] = Value::Null;
    }
    if let Some(f) = &s.fault {
        v["fault"] = json!({"code": f.code, "message": f.message, "created": f.created});
    }
    v
}
