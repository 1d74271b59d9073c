//! The libvirt domain definition for an [`InstanceSpec`]: a pure function,
//! so what weft asks libvirt for is unit-tested without libvirt.
//!
//! Choices, each as Nova's libvirt driver makes them where it has one:
//! - `<interface type='ethernet'>` with `<target dev='tapX'/>` and no
//!   `managed='no'`: libvirt creates the tap itself at start (and deletes it
//!   at stop), QEMU gets its fd; the switch then attaches that netdev by
//!   name. No libvirt network, bridge or nwfilter is involved.
//! - the serial console goes to a pty *and* a log file written by virtlogd
//!   (`append='off'`: each boot starts a fresh log, as `console log show`
//!   expects), so console output survives QEMU and agent restarts.
//! - `<metadata>` holds the server uuid in weft's namespace: how `list()`
//!   tells weft's domains from any other domain on the host.

use std::fmt::Write;

use crate::{Accel, InstanceSpec, InterfaceSpec};

/// The XML namespace of weft's `<metadata>` element.
pub const METADATA_NS: &str = "https://weft.invalid/xmlns/libvirt/instance/1";

/// The domain XML libvirt defines for `spec` (call [`InstanceSpec::validate`]
/// first: names and paths are written as they are).
pub fn domain_xml(spec: &InstanceSpec) -> String {
    let mut x = String::with_capacity(2048);
    let kind = match spec.accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "qemu",
    };
    // `write!` into a String cannot fail.
    let _ = writeln!(x, "<domain type='{kind}'>");
    let _ = writeln!(x, "  <name>{}</name>", spec.name);
    let _ = writeln!(x, "  <uuid>{}</uuid>", spec.uuid);
    x.push_str("  <metadata>\n");
    let _ = writeln!(x, "    <weft:instance xmlns:weft='{METADATA_NS}'>");
    let _ = writeln!(x, "      <weft:uuid>{}</weft:uuid>", spec.uuid);
    for (k, v) in &spec.metadata {
        let _ = writeln!(
            x,
            "      <weft:meta key='{}'>{}</weft:meta>",
            escape(k),
            escape(v)
        );
    }
    x.push_str("    </weft:instance>\n  </metadata>\n");
    let _ = writeln!(x, "  <memory unit='MiB'>{}</memory>", spec.memory_mb);
    let _ = writeln!(x, "  <vcpu>{}</vcpu>", spec.vcpus);
    // A whole-disk image boots through the BIOS from its MBR, like a cloud image.
    x.push_str(
        "  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n    <boot dev='hd'/>\n  </os>\n",
    );
    // ACPI lets a soft stop or reboot reach guests that handle the power button.
    x.push_str("  <features><acpi/><apic/></features>\n");
    if spec.accel == Accel::Kvm {
        x.push_str("  <cpu mode='host-model'/>\n");
    }
    x.push_str("  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n");
    x.push_str("  <devices>\n");
    let disks = [
        Some(&spec.root_disk),
        spec.ephemeral.as_ref().map(|d| &d.path),
        spec.swap.as_ref().map(|d| &d.path),
    ];
    for (dev, path) in ["vda", "vdb", "vdc"]
        .iter()
        .zip(disks.into_iter().flatten())
    {
        let _ = writeln!(x, "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='{}'/>\n      <target dev='{dev}' bus='virtio'/>\n    </disk>", path.display());
    }
    for nic in &spec.interfaces {
        x.push_str(&interface_xml(nic));
    }
    let _ = writeln!(
        x,
        "    <serial type='pty'>\n      <log file='{}' append='off'/>\n      <target port='0'/>\n    </serial>",
        spec.console_log.display()
    );
    x.push_str(
        "    <console type='pty'>\n      <target type='serial' port='0'/>\n    </console>\n",
    );
    x.push_str("    <memballoon model='virtio'/>\n  </devices>\n</domain>\n");
    x
}

/// One `<interface type='ethernet'>` (in a domain, or alone for a
/// hot-plug): libvirt makes the tap, the switch attaches it by name.
pub fn interface_xml(nic: &InterfaceSpec) -> String {
    format!(
        "    <interface type='ethernet'>\n      <mac address='{}'/>\n      <target dev='{}'/>\n      <model type='virtio'/>\n      <mtu size='{}'/>\n    </interface>\n",
        nic.mac, nic.tap, nic.mtu
    )
}

/// A domain's XML (libvirt's own, inactive) with new vCPUs and memory:
/// `<vcpu>`, `<memory>` and `<currentMemory>` rewritten, everything else
/// (hot-plugged NICs included) kept as libvirt has it.
pub fn resized_xml(xml: &str, vcpus: u32, memory_mb: u64) -> Option<String> {
    let mut out = replace_element(xml, "vcpu", &vcpus.to_string(), None)?;
    out = replace_element(&out, "memory", &memory_mb.to_string(), Some("MiB"))?;
    // Optional in what libvirt hands back; when present it must agree.
    if let Some(o) = replace_element(&out, "currentMemory", &memory_mb.to_string(), Some("MiB")) {
        out = o;
    }
    Some(out)
}

/// `<tag ...>old</tag>` -> `<tag [unit='u'] [other attrs]>text</tag>` (the
/// first one at the domain's top level only: tags nested deeper, such as a
/// NUMA cell's `memory` attribute, are not elements of this name).
fn replace_element(xml: &str, tag: &str, text: &str, unit: Option<&str>) -> Option<String> {
    let open = format!("<{tag}");
    let mut from = 0;
    let start = loop {
        let at = from + xml[from..].find(&open)?;
        let next = xml[at + open.len()..].chars().next()?;
        if next == '>' || next == ' ' {
            break at;
        }
        from = at + open.len();
    };
    let head_end = start + xml[start..].find('>')?;
    let close = format!("</{tag}>");
    let end = head_end + xml[head_end..].find(&close)?;
    let attrs: String = match unit {
        // The value is rewritten in `unit`; other attributes are kept.
        Some(u) => {
            let kept: Vec<&str> = xml[start + open.len()..head_end]
                .split_whitespace()
                .filter(|a| !a.starts_with("unit="))
                .collect();
            let mut a = format!(" unit='{u}'");
            for k in kept {
                a.push(' ');
                a.push_str(k);
            }
            a
        }
        None => xml[start + open.len()..head_end].to_string(),
    };
    Some(format!(
        "{}<{tag}{attrs}>{text}{}",
        &xml[..start],
        &xml[end..]
    ))
}

/// XML text/attribute escaping for the free-form metadata values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::sample;
    use crate::ExtraDisk;

    #[test]
    fn tcg_domain_has_the_parts_nova_uses() {
        let xml = domain_xml(&sample());
        for want in [
            "<domain type='qemu'>",
            "<name>weft-hv-sample</name>",
            "<uuid>0f4e1c5a-9b1d-4c4e-8a55-3b0d6c1e2f70</uuid>",
            "<weft:uuid>0f4e1c5a-9b1d-4c4e-8a55-3b0d6c1e2f70</weft:uuid>",
            "<memory unit='MiB'>256</memory>",
            "<vcpu>2</vcpu>",
            "<type arch='x86_64' machine='pc'>hvm</type>",
            "<boot dev='hd'/>",
            "<driver name='qemu' type='qcow2'/>",
            "<source file='/var/lib/weft/instances/x/disk'/>",
            "<target dev='vda' bus='virtio'/>",
            "<interface type='ethernet'>",
            "<mac address='fa:16:3e:12:34:56'/>",
            "<target dev='tap5d2c8f0e-11'/>",
            "<model type='virtio'/>",
            "<mtu size='1450'/>",
            "<log file='/var/lib/weft/instances/x/console.log' append='off'/>",
            "<console type='pty'>",
        ] {
            assert!(xml.contains(want), "missing {want} in\n{xml}");
        }
        // libvirt must create the tap itself, so the target is not unmanaged.
        assert!(!xml.contains("managed='no'"));
        assert!(
            !xml.contains("host-model"),
            "TCG cannot use the host CPU model"
        );
    }

    #[test]
    fn resize_rewrites_the_size_and_keeps_the_rest() {
        let xml = "<domain type='qemu'>\n  <name>n</name>\n  <memory unit='KiB'>262144</memory>\n  <currentMemory unit='KiB'>262144</currentMemory>\n  <vcpu placement='static'>1</vcpu>\n  <devices><interface type='ethernet'><mac address='fa:16:3e:00:00:01'/></interface></devices>\n</domain>";
        let out = resized_xml(xml, 2, 512).unwrap();
        assert!(out.contains("<memory unit='MiB'>512</memory>"), "{out}");
        assert!(
            out.contains("<currentMemory unit='MiB'>512</currentMemory>"),
            "{out}"
        );
        assert!(out.contains("<vcpu placement='static'>2</vcpu>"), "{out}");
        assert!(out.contains("<mac address='fa:16:3e:00:00:01'/>"));
        assert!(!out.contains("262144"));
        // No <vcpu> at all: not a domain this can resize.
        assert!(resized_xml("<domain><memory>1</memory></domain>", 1, 64).is_none());
        // Our own XML has no currentMemory: still fine.
        let ours = domain_xml(&sample());
        let out = resized_xml(&ours, 4, 1024).unwrap();
        assert!(out.contains("<vcpu>4</vcpu>") && out.contains("<memory unit='MiB'>1024</memory>"));
    }

    #[test]
    fn kvm_and_extra_disks() {
        let mut spec = sample();
        spec.accel = Accel::Kvm;
        spec.swap = Some(ExtraDisk {
            path: "/i/disk.swap".into(),
        });
        spec.ephemeral = Some(ExtraDisk {
            path: "/i/disk.eph0".into(),
        });
        let xml = domain_xml(&spec);
        assert!(xml.starts_with("<domain type='kvm'>"));
        let eph = xml
            .find("<source file='/i/disk.eph0'/>\n      <target dev='vdb'")
            .expect("ephemeral is vdb");
        let swap = xml
            .find("<source file='/i/disk.swap'/>\n      <target dev='vdc'")
            .expect("swap is vdc");
        assert!(eph < swap);
    }

    #[test]
    fn interfaces_keep_their_order_and_metadata_is_escaped() {
        let mut spec = sample();
        let mut second = spec.interfaces[0].clone();
        second.tap = "tapsecond".into();
        spec.interfaces.push(second);
        spec.metadata.insert("project".into(), "a<b>&'c\"".into());
        let xml = domain_xml(&spec);
        assert!(xml.find("tap5d2c8f0e-11").unwrap() < xml.find("tapsecond").unwrap());
        assert!(
            xml.contains("<weft:meta key='project'>a&lt;b&gt;&amp;&apos;c&quot;</weft:meta>"),
            "{xml}"
        );
    }
}
