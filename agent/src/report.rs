//! Versioned health report types, shared by the agent (writer) and the
//! controller (reader). Serde only: no I/O lives here.

use serde::{Deserialize, Serialize};

/// The report schema version; bumped on any incompatible change.
pub const REPORT_VERSION: u32 = 1;

/// What one node says about itself at `/v1/report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub version: u32,
    pub hostname: String,
    pub k3s_unit_active: bool,
    pub kubelet_healthy: bool,
    pub mem_total_bytes: u64,
    pub mem_available_bytes: u64,
    pub load_1m: f64,
    pub soc_temp_celsius: Option<f64>,
    pub throttled: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_through_json() {
        let r = NodeReport {
            version: REPORT_VERSION,
            hostname: "node1".into(),
            k3s_unit_active: true,
            kubelet_healthy: false,
            mem_total_bytes: 4 << 30,
            mem_available_bytes: 1 << 30,
            load_1m: 0.5,
            soc_temp_celsius: Some(51.2),
            throttled: None,
        };
        let json = serde_json::to_string(&r).expect("serialize");
        let back: NodeReport = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, r);
        assert!(json.contains("\"soc_temp_celsius\":51.2"));
    }
}
