//! weft-datapath: the switch. Replaces an OVS integration bridge plus the
//! physical bridges of a compute host.
