//! The standard resource classes (os-resource-classes, in its order) and
//! standard traits (a subset of os-traits: the ones Nova, Neutron and Cyborg
//! report or request). Both are fixed in code, as Placement syncs them from
//! those libraries at start; operators add `CUSTOM_*` names at run time.

/// os-resource-classes' standard classes, in their canonical order.
pub const STANDARD_CLASSES: &[&str] = &[
    "VCPU",
    "MEMORY_MB",
    "DISK_GB",
    "PCI_DEVICE",
    "SRIOV_NET_VF",
    "NUMA_SOCKET",
    "NUMA_CORE",
    "NUMA_THREAD",
    "NUMA_MEMORY_MB",
    "IPV4_ADDRESS",
    "VGPU",
    "VGPU_DISPLAY_HEAD",
    "NET_BW_EGR_KILOBIT_PER_SEC",
    "NET_BW_IGR_KILOBIT_PER_SEC",
    "PCPU",
    "MEM_ENCRYPTION_CONTEXT",
    "FPGA",
    "PGPU",
    "NET_PACKET_RATE_KILOPACKET_PER_SEC",
    "NET_PACKET_RATE_EGR_KILOPACKET_PER_SEC",
    "NET_PACKET_RATE_IGR_KILOPACKET_PER_SEC",
];

/// Standard traits: a subset of os-traits.
pub const STANDARD_TRAITS: &[&str] = &[
    "COMPUTE_ACCELERATORS",
    "COMPUTE_ADDRESS_SPACE_EMULATED",
    "COMPUTE_ADDRESS_SPACE_PASSTHROUGH",
    "COMPUTE_ARCH_AARCH64",
    "COMPUTE_ARCH_X86_64",
    "COMPUTE_DEVICE_TAGGING",
    "COMPUTE_EPHEMERAL_ENCRYPTION",
    "COMPUTE_GRAPHICS_MODEL_VGA",
    "COMPUTE_GRAPHICS_MODEL_VIRTIO",
    "COMPUTE_IMAGE_TYPE_ISO",
    "COMPUTE_IMAGE_TYPE_QCOW2",
    "COMPUTE_IMAGE_TYPE_RAW",
    "COMPUTE_NET_ATTACH_INTERFACE",
    "COMPUTE_NET_ATTACH_INTERFACE_WITH_TAG",
    "COMPUTE_NET_VIF_MODEL_E1000",
    "COMPUTE_NET_VIF_MODEL_VIRTIO",
    "COMPUTE_NODE",
    "COMPUTE_RESCUE_BFV",
    "COMPUTE_SAME_HOST_COLD_MIGRATE",
    "COMPUTE_SECURITY_TPM_2_0",
    "COMPUTE_SECURITY_UEFI_SECURE_BOOT",
    "COMPUTE_SOCKET_PCI_NUMA_AFFINITY",
    "COMPUTE_STATUS_DISABLED",
    "COMPUTE_TRUSTED_CERTS",
    "COMPUTE_VOLUME_ATTACH_WITH_TAG",
    "COMPUTE_VOLUME_EXTEND",
    "COMPUTE_VOLUME_MULTI_ATTACH",
    "HW_CPU_AARCH64_ASIMD",
    "HW_CPU_HYPERTHREADING",
    "HW_CPU_X86_AESNI",
    "HW_CPU_X86_AMD_SEV",
    "HW_CPU_X86_AVX",
    "HW_CPU_X86_AVX2",
    "HW_CPU_X86_AVX512F",
    "HW_CPU_X86_BMI",
    "HW_CPU_X86_BMI2",
    "HW_CPU_X86_F16C",
    "HW_CPU_X86_FMA3",
    "HW_CPU_X86_MMX",
    "HW_CPU_X86_SGX",
    "HW_CPU_X86_SHA",
    "HW_CPU_X86_SSE",
    "HW_CPU_X86_SSE2",
    "HW_CPU_X86_SSE3",
    "HW_CPU_X86_SSE41",
    "HW_CPU_X86_SSE42",
    "HW_CPU_X86_SSSE3",
    "HW_CPU_X86_SVM",
    "HW_CPU_X86_VMX",
    "HW_GPU_API_DXVA",
    "HW_GPU_API_VULKAN",
    "HW_GPU_MAX_DISPLAY_HEADS_1",
    "HW_NIC_ACCEL_SSL",
    "HW_NIC_ACCEL_TLS",
    "HW_NIC_DCB_PFC",
    "HW_NIC_OFFLOAD_GRO",
    "HW_NIC_OFFLOAD_GSO",
    "HW_NIC_OFFLOAD_RX",
    "HW_NIC_OFFLOAD_TSO",
    "HW_NIC_OFFLOAD_TX",
    "HW_NIC_ROOT",
    "HW_NIC_SRIOV",
    "HW_NIC_VMDQ",
    "HW_NUMA_ROOT",
    "MISC_SHARES_VIA_AGGREGATE",
    "OWNER_CYBORG",
    "OWNER_NOVA",
    "STORAGE_DISK_HDD",
    "STORAGE_DISK_SSD",
];

/// The prefix every operator-made class and trait carries.
pub const CUSTOM_PREFIX: &str = "CUSTOM_";

/// Whether `name` is a well-formed custom name: `CUSTOM_` then `A-Z0-9_`,
/// at most 255 characters, as Placement's schemas require.
pub fn is_custom_name(name: &str) -> bool {
    name.len() <= 255
        && name.len() > CUSTOM_PREFIX.len()
        && name.starts_with(CUSTOM_PREFIX)
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Where a class sorts as Placement orders classes (by id): the standard
/// ones in catalog order, then custom ones (by name here).
pub fn class_rank(name: &str) -> (usize, &str) {
    let i = STANDARD_CLASSES.iter().position(|s| *s == name);
    (i.unwrap_or(STANDARD_CLASSES.len()), name)
}

/// Whether `name` is a standard resource class.
pub fn is_standard_class(name: &str) -> bool {
    STANDARD_CLASSES.contains(&name)
}

/// Whether `name` is a standard trait.
pub fn is_standard_trait(name: &str) -> bool {
    STANDARD_TRAITS.binary_search(&name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_traits_are_sorted_for_binary_search() {
        assert!(STANDARD_TRAITS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_standard_trait("HW_CPU_X86_AVX2"));
        assert!(!is_standard_trait("CUSTOM_GOLD"));
    }

    #[test]
    fn custom_names() {
        assert!(is_custom_name("CUSTOM_GOLD_1"));
        assert!(!is_custom_name("CUSTOM_"));
        assert!(!is_custom_name("GOLD"));
        assert!(!is_custom_name("CUSTOM_gold"));
        assert!(!is_custom_name(&format!("CUSTOM_{}", "A".repeat(250))));
    }
}
