//! A Raspberry Pi through the whole runner against the fakes: judged by its
//! cgroup controllers, not by its `cmdline.txt` flags; edited and rebooted
//! only when the memory controller is off, and re-checked after the reboot.

use super::fake::{Call, FakePi};
use super::tests::{node, setup};
use crate::step::StepId;

const FRESH: &str = "console=tty1 root=PARTUUID=1 rootwait\n";

fn pi_step(r: &super::RunReport, name: &str) -> super::StepReport {
    node(r, name)
        .steps
        .iter()
        .find(|s| s.step == StepId::PiCgroups)
        .cloned()
        .expect("pi-cgroups in the report")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pi_with_memory_on_and_no_flags_is_neither_edited_nor_rebooted() {
    let s = setup(1, 0).await;
    FakePi::boot(
        &mut s.fleet.node("s1").lock().expect("node"),
        "6.12.25+rpt-rpi-v8",
        true,
        FRESH,
    );
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(pi_step(&report, "s1").status, super::Status::Ok);
    let state = s.fleet.node("s1");
    let state = state.lock().expect("node");
    assert_eq!(state.boot, 1, "rebooted");
    assert_eq!(state.files[FakePi::CMDLINE], FRESH.as_bytes());
    let calls = s.fleet.calls();
    assert!(
        !calls
            .iter()
            .any(|(_, c)| matches!(c, Call::Put(p) if p == FakePi::CMDLINE)),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pi_with_memory_off_gets_cgroup_enable_memory_one_reboot_and_converges() {
    let s = setup(1, 0).await;
    FakePi::boot(
        &mut s.fleet.node("s1").lock().expect("node"),
        "6.12.25+rpt-rpi-v8",
        false,
        FRESH,
    );
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(pi_step(&report, "s1").status, super::Status::Changed);
    {
        let state = s.fleet.node("s1");
        let state = state.lock().expect("node");
        assert_eq!(state.boot, 2, "one reboot");
        assert_eq!(
            state.files[FakePi::CMDLINE],
            b"console=tty1 root=PARTUUID=1 rootwait cgroup_enable=memory\n"
        );
    }
    let again = s.apply().await;
    assert!(!again.changed() && !again.failed(), "{again:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pi_whose_reboot_left_memory_off_fails_naming_the_file_and_kernel() {
    let s = setup(1, 0).await;
    // A kernel the flags do not reach: memory stays off after the reboot.
    {
        let state = s.fleet.node("s1");
        let mut state = state.lock().expect("node");
        FakePi::boot(&mut state, "6.6.51+rpt-rpi-v8", false, FRESH);
        state.pi.as_mut().expect("pi").ignores_cmdline = true;
    }
    let report = s.apply().await;
    let why = format!("{:?}", node(&report, "s1"));
    assert!(report.failed(), "{report:#?}");
    assert!(
        why.contains(FakePi::CMDLINE) && why.contains("6.6.51+rpt-rpi-v8"),
        "{why}"
    );
}
