//! node3, the arm64 Pi, as K3s judges it: by its cgroup controllers. The
//! lab's Pi kernel (`lab pi-kernel`) has memory off unless the cmdline.txt it
//! booted with says `cgroup_enable=memory`, or on by default (memory-on).

use super::*;

/// A Pi whose kernel has the memory controller on with no flag in
/// cmdline.txt (a kernel built with memory on) is what K3s needs already:
/// pictl must neither edit the file nor reboot the node.
pub fn a_pi_with_memory_on_and_no_cgroup_flags_is_left_untouched(lab: &Lab) {
    ensure_converged(lab);
    let path = "/boot/firmware/cmdline.txt";
    let flagged = lab
        .ssh_ok("node3", "root", &format!("cat {path}"))
        .expect("cmdline");
    let fresh: Vec<&str> = flagged
        .split_whitespace()
        .filter(|w| !w.starts_with("cgroup_"))
        .collect();
    lab.ssh_ok(
        "node3",
        "root",
        &format!("echo '{}' > {path}", fresh.join(" ")),
    )
    .expect("cmdline without flags");
    lab.pi_kernel("node3", "memory-on")
        .expect("memory-on kernel");
    lab.reboot("node3").expect("reboot node3");
    assert_eq!(
        lab.ssh_ok(
            "node3",
            "root",
            "awk '$1 == \"memory\" { print $4 }' /proc/cgroups"
        )
        .expect("cgroups"),
        "1",
        "the memory-on kernel"
    );
    let before = lab
        .ssh_ok("node3", "root", &format!("sha256sum {path}"))
        .expect("sha");
    let boot = boot_id(lab, "node3");
    let (code, v, out) = apply_json(lab, &lab.inventory());
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    assert!(
        steps(&v, "node3", "changed").is_empty(),
        "node3 changed: {v:#}"
    );
    assert_eq!(boot, boot_id(lab, "node3"), "node3 was rebooted");
    assert_eq!(
        before,
        lab.ssh_ok("node3", "root", &format!("sha256sum {path}"))
            .expect("sha"),
        "cmdline.txt was edited"
    );
    assert_eq!(
        lab.ssh_ok("node3", "root", "systemctl is-active k3s-agent")
            .expect("k3s-agent"),
        "active"
    );
    // Back to Raspberry Pi OS's kernel and the line pictl wrote, for the next cases.
    lab.ssh_ok(
        "node3",
        "root",
        &format!("printf '%s' '{flagged}' > {path}"),
    )
    .expect("cmdline back");
    lab.pi_kernel("node3", "memory-off")
        .expect("memory-off kernel");
}
